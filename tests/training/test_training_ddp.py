"""Data-parallel training: two gloo processes on CPU, through the torchrun environment.

The two ranks are forked from the test process (``torch.multiprocessing``, start method
``fork``) so they skip the slow imports of torch and MONAI; each sets the variables torchrun
would set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and calls the same
``polypseg.training.train`` as ``torchrun --nproc-per-node 2 -m polypseg train``.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from polypseg.checkpoint import load_checkpoint, read_meta
from polypseg.training import TrainConfig, train
from polypseg.training.logs import read_metrics_csv
from polypseg.training.state import load_state, state_path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank_main(rank: int, world_size: int, port: int, values: dict[str, Any]) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)  # OpenMP pools do not survive fork; one thread per rank
    train(TrainConfig(**values))


@pytest.mark.skipif(sys.platform != "linux", reason="forked gloo ranks need Linux")
def test_two_process_gloo_run_matches_single_process_structure(
    tiny_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    single = train(tiny_config(out=str(tmp_path / "single")))
    ddp = tmp_path / "ddp"
    values = dataclasses.asdict(tiny_config(out=str(ddp), batch_size=1))
    mp.start_processes(_rank_main, args=(2, _free_port(), values), nprocs=2,
                       start_method="fork", join=True)

    rows_single = read_metrics_csv(single / "metrics.csv")
    rows_ddp = read_metrics_csv(ddp / "metrics.csv")
    assert [list(r) for r in rows_ddp] == [list(r) for r in rows_single]
    assert [r["step"] for r in rows_ddp] == [2, 4]  # 4 images / (2 ranks x 1) = 2 steps/epoch
    for which in ("best", "last"):
        _, meta = load_checkpoint(ddp / "checkpoints" / which)
        assert meta["variant"] == "p4"
        assert set(meta) == set(read_meta(single / "checkpoints" / which))
    assert load_state(state_path(ddp))["data_order"]["world_size"] == 2
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())
    # rank 1 wrote nothing of its own: one event file, from rank 0
    assert len(list((ddp / "tb").glob("events.out.tfevents.*"))) == 1
