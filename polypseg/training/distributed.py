"""Data-parallel training helpers (``torchrun``): process group, device, gathering, rank 0.

``torchrun --nproc-per-node N -m polypseg train ...`` sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; :func:`setup` then joins the process group (NCCL on CUDA, gloo on CPU) and
picks ``cuda:LOCAL_RANK``. A plain ``python -m polypseg train`` is a world of one: no process
group, every helper here is then a no-op. Only rank 0 writes files (:attr:`Dist.is_main`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from polypseg.errors import RunError


@dataclass(frozen=True)
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether a process group spans more than this process."""
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cuda`` -> ``cuda:LOCAL_RANK``; checked."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RunError(f"device {name!r} asked for, but torch sees no CUDA GPU here")
        if name == "cuda":
            return torch.device("cuda", local_rank)
    return torch.device(name)


def setup(device_name: str) -> Dist:
    """Join the ``torchrun`` process group when there is one; return this process's place."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return Dist(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def teardown(ctx: Dist) -> None:
    """Leave the process group that :func:`setup` joined."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def gather(ctx: Dist, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a world of one)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast(ctx: Dist, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: Dist) -> None:
    """Wait for every rank."""
    if ctx.enabled:
        dist.barrier()


def wrap_model(ctx: Dist, model: torch.nn.Module) -> torch.nn.Module:
    """The model wrapped in ``DistributedDataParallel`` when the world is larger than one."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return getattr(model, "module", model)
