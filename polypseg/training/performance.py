"""How a training step runs fast, and cheap start-up: memory format, compilation, determinism.

* **Channels-last** (NHWC) batches: oneDNN convolves NHWC maps without reordering them to its
  blocked layout and back around every convolution; zoo keeps the layout through batch norm,
  pooling and upsampling (:mod:`zoo.norm`, :mod:`zoo.pooling`). Same model, other kernels:
  outputs and gradients agree to float rounding. On by default on CPU, where it was measured
  (``polypseg bench speed --side-by-side``); off by default on CUDA, where it was not.
* ``torch.compile`` of the model (``--compile``): off by default. On this project's CPU it
  compiled for minutes and then ran no faster than eager (results/speed-train.md); on a GPU it
  may pay, measure it there first.
* glibc's allocator tuned for large tensors (:func:`tune_allocator`): by default glibc serves
  every allocation above its (adaptive) mmap threshold from fresh pages and gives freed heap
  memory back to the kernel, so a CPU training step that allocates and frees megabytes of
  activations per op page-faults through every one of them (measured: the per-field batch norm
  spent three quarters of its time in page faults). Keeping large blocks on the heap and not
  trimming it makes a step reuse warm memory; the price is that the process keeps its peak
  heap (plus a 64 MiB pad) instead of returning it between steps.
* Start-up: ``torch.use_deterministic_algorithms`` imports ``torch._inductor`` and
  ``torch._dynamo`` (about 1.2 s of CPU), but so does the first ``step()`` of any
  ``torch.optim`` optimiser (it runs under a dynamo graph break), so a training run pays that
  import either way and polypseg does not work around it; what it does avoid is importing all
  of MONAI for the loss (:mod:`polypseg.training.losses`, about 2 s).
"""

from __future__ import annotations

import os

import torch
from torch import nn

# The memory-format default is shared with inference and owned there (importable without zoo,
# which deployed exports run without).
from polypseg.inference import channels_last_default, memory_format

__all__ = ["channels_last_default", "compiled", "memory_format", "tune_allocator"]

#: glibc ``mallopt`` parameters and the values :func:`tune_allocator` sets.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
MALLOC_SETTINGS = {
    "mmap_threshold": 32 * 2**20,  # glibc's largest: blocks up to 32 MiB come from the heap
    "trim_threshold": 2**30,  # keep up to 1 GiB of free heap instead of returning it
    "top_pad": 64 * 2**20,  # grow the heap in 64 MiB steps
}
_TUNED: list[bool] = []


def tune_allocator() -> bool:
    """Set glibc's malloc to keep large blocks on the heap (once per process); False where
    the C library is not glibc, or the user set any ``MALLOC_*_`` variable (theirs win)."""
    if _TUNED:
        return _TUNED[0]
    import ctypes
    import ctypes.util
    import platform

    tuned = False
    user_set = any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc" and not user_set:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            tuned = all(
                libc.mallopt(option, value) == 1
                for option, value in (
                    (_M_MMAP_THRESHOLD, MALLOC_SETTINGS["mmap_threshold"]),
                    (_M_TRIM_THRESHOLD, MALLOC_SETTINGS["trim_threshold"]),
                    (_M_TOP_PAD, MALLOC_SETTINGS["top_pad"]),
                )
            )
        except (OSError, AttributeError):
            tuned = False
    _TUNED.append(tuned)
    return tuned


def compiled(model: nn.Module, enabled: bool) -> nn.Module:
    """``torch.compile(model)`` when ``enabled`` (sharing its parameters), else ``model``."""
    if not enabled:
        return model
    return torch.compile(model)
