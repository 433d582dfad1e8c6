"""The device a process runs on (``polypseg.devices``)."""

from __future__ import annotations

import pytest
import torch

from polypseg.devices import resolve_device
from polypseg.errors import RunError


# GPU placement, checked on any machine (torch.cuda is faked where a test says so)
@pytest.fixture
def four_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch believes it sees 4 CUDA GPUs (nothing is run on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)


@pytest.mark.usefixtures("four_gpus")
def test_cuda_index_under_torchrun_is_offset_by_the_local_rank() -> None:
    assert resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
    assert resolve_device("cuda", local_rank=3) == torch.device("cuda", 3)
    assert resolve_device("cuda:2") == torch.device("cuda", 2)  # one process
    assert resolve_device("cuda:2", local_rank=1) == torch.device("cuda", 3)  # ranks on 2, 3
    assert resolve_device("cpu", local_rank=1) == torch.device("cpu")
    with pytest.raises(RunError, match=r"cuda:4.*4 GPU\(s\).*at most 2 process"):
        resolve_device("cuda:2", local_rank=2)
    with pytest.raises(RunError, match=r"cuda:4.*4 GPU\(s\)"):
        resolve_device("cuda", local_rank=4)


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RunError, match="no CUDA GPU"):
        resolve_device("cuda:1")
    assert resolve_device("auto") == torch.device("cpu")
