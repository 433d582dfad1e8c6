"""Data-parallel training helpers (``torchrun``): process group, device, gathering, rank 0.

``torchrun --nproc-per-node N -m polypseg train ...`` sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; :func:`setup` then joins the process group (NCCL on CUDA, gloo on CPU) and
picks ``cuda:LOCAL_RANK`` (``--device cuda:K``: ``cuda:K+LOCAL_RANK``, see
:func:`polypseg.devices.resolve_device`). A plain ``python -m polypseg train`` is a world of
one: no process group, every helper here is then a no-op. Only rank 0 writes files
(:attr:`Dist.is_main`).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from polypseg.devices import resolve_device


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


def setup(device_name: str) -> Dist:
    """Join the ``torchrun`` process group when there is one; return this process's place."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":  # also for one process on cuda:K: pinned memory goes to K
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return Dist(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def teardown(ctx: Dist) -> None:
    """Leave the process group that :func:`setup` joined.

    Call it after dropping the ``DistributedDataParallel`` wrapper: its reducer holds the
    group, and a gloo group freed last by the reducer is destroyed with the GIL held, joining
    a gloo thread that may be waiting for the GIL to free a finished collective's tensor (a
    deadlock, seen once in ``tests/training/test_training_ddp.py`` on a loaded 2-core
    machine). Collected first, the reducer leaves the group to ``destroy_process_group``,
    whose binding releases the GIL while the group's threads stop.
    """
    if ctx.enabled and dist.is_initialized():
        gc.collect()  # a wrapper kept alive only by a reference cycle goes now, not later
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


def broadcast_buffers(ctx: Dist, model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) into every rank's ``model``.

    In training each rank's forward passes update its own running statistics (DDP broadcasts
    rank 0's only at the start of each forward); before validation this makes every rank
    evaluate the model rank 0 saves.
    """
    if not ctx.enabled:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: The most DataLoader workers :func:`auto_workers` starts per process.
MAX_AUTO_WORKERS = 4


def auto_workers(device: torch.device, cpus: int | None = None,
                 local_world_size: int | None = None) -> int:
    """DataLoader workers per process when the configuration leaves ``workers`` unset.

    CUDA: ``min(4, CPUs per process on this node - 1)``: loading and augmenting a 256 px image
    costs about 11 ms of CPU, which would starve a GPU if done between its steps, and one CPU
    stays with the training process (``LOCAL_WORLD_SIZE`` processes share the node's CPUs).
    CPU: 0, since the training threads already use every core and workers would compete with
    them for the same cores (loading is a few percent of a CPU step).
    """
    if device.type != "cuda":
        return 0
    cpus = available_cpus() if cpus is None else cpus
    if local_world_size is None:
        local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(0, min(MAX_AUTO_WORKERS, cpus // max(1, local_world_size) - 1))


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
