"""The torch device a process runs on, from a user's ``--device`` (training, evaluation, opening a
model for inference): ``auto``, ``cpu``, ``cuda`` or ``cuda:K``, checked against the GPUs torch
sees."""

from __future__ import annotations

import torch

from polypseg.errors import RunError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """This process's device; CUDA indices are checked against the GPUs torch sees.

    ``auto``: CUDA when available, else CPU. ``cuda``: ``cuda:LOCAL_RANK``, one GPU per process
    of the node. ``cuda:K``: the node's processes take consecutive GPUs from ``K`` on,
    ``cuda:K+LOCAL_RANK`` (plain ``cuda:K`` for a single process, whose ``LOCAL_RANK`` is 0),
    so ``torchrun --nproc-per-node 2 ... --device cuda:2`` trains on GPUs 2 and 3.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if not name.startswith("cuda"):
        return torch.device(name)
    if not torch.cuda.is_available():
        raise RunError(f"device {name!r} asked for, but torch sees no CUDA GPU here")
    first = torch.device(name).index or 0
    index, count = first + local_rank, torch.cuda.device_count()
    if index >= count:
        raise RunError(
            f"device {name!r} for local rank {local_rank} means cuda:{index}, but torch sees "
            f"{count} GPU(s): start at most {max(0, count - first)} process(es) per node from "
            f"cuda:{first} (each process takes cuda:{first}+LOCAL_RANK)"
        )
    return torch.device("cuda", index)
