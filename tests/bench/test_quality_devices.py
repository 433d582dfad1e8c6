"""``bench quality --jobs N`` spreads its worker subprocesses over the visible GPUs.

No GPU is needed: torch.cuda is faked and only the device each worker thread is given is
checked (what ``_run_subprocess`` passes on as ``--device``).
"""

from __future__ import annotations

import threading

import pytest
import torch

from polypseg.bench.quality import _device_per_worker


def _devices_of_threads(pick, threads: int, calls: int = 2) -> list[list[str | None]]:
    """Each thread's devices over ``calls`` jobs, in thread order."""
    seen: list[list[str | None]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads)

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(calls):
            seen[i].append(pick())

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return seen


@pytest.mark.parametrize("device", [None, "auto", "cuda"])
def test_each_worker_keeps_its_own_gpu_round_robin(
    monkeypatch: pytest.MonkeyPatch, device: str | None
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    seen = _devices_of_threads(_device_per_worker(device), threads=4)
    assert all(len(set(calls)) == 1 for calls in seen)  # a worker keeps its GPU
    firsts = sorted(calls[0] for calls in seen)
    assert firsts == ["cuda:0", "cuda:0", "cuda:1", "cuda:2"]  # 4 workers on 3 GPUs


@pytest.mark.parametrize("device", [None, "cpu", "cuda:1"])
def test_an_explicit_device_or_a_single_gpu_is_kept(
    monkeypatch: pytest.MonkeyPatch, device: str | None
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1 if device is None else 3)
    assert _device_per_worker(device)() == device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _device_per_worker(device)() == device
