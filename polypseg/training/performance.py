"""How a training step runs fast, and cheap start-up: memory format, compilation, determinism.

* **Channels-last** (NHWC) batches: oneDNN convolves NHWC maps without reordering them to its
  blocked layout and back around every convolution; zoo keeps the layout through batch norm,
  pooling and upsampling (:mod:`zoo.norm`, :mod:`zoo.pooling`). Same model, other kernels:
  outputs and gradients agree to float rounding. On by default on CPU, where it was measured
  (``polypseg bench speed --side-by-side``); off by default on CUDA, where it was not.
* ``torch.compile`` of the model (``--compile``): off by default. On this project's CPU it
  compiled for minutes and then ran no faster than eager (results/speed-train.md); on a GPU it
  may pay, measure it there first.
* Deterministic algorithms without importing ``torch._inductor``:
  ``torch.use_deterministic_algorithms`` imports the inductor (and dynamo) package only to set
  its own ``deterministic`` flag, about a second of start-up. :func:`set_deterministic` sets
  torch's flag directly and the inductor's only when that package is already loaded (a compiled
  run imports it anyway).
"""

from __future__ import annotations

import sys

import torch
from torch import nn


def set_deterministic(mode: bool, warn_only: bool = False) -> None:
    """``torch.use_deterministic_algorithms(mode, warn_only=...)`` minus the inductor import."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
        return
    setter(mode, warn_only=warn_only)


def channels_last_default(device: torch.device) -> bool:
    """Whether batches go channels-last when the configuration leaves it open: CPU only."""
    return device.type == "cpu"


def memory_format(channels_last: bool) -> torch.memory_format:
    """The memory format of input batches."""
    return torch.channels_last if channels_last else torch.contiguous_format


def loss_readback_lag(device: torch.device, needs_value: bool) -> int:
    """Steps by which a step's loss is read back to the host: 1 on CUDA (reading it at once
    would wait for the step to finish), 0 on CPU or when a callback needs the value now."""
    return 1 if device.type == "cuda" and not needs_value else 0


def compiled(model: nn.Module, enabled: bool) -> nn.Module:
    """``torch.compile(model)`` when ``enabled`` (sharing its parameters), else ``model``."""
    if not enabled:
        return model
    return torch.compile(model)
