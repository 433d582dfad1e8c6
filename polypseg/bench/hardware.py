"""What a benchmark ran on: CPU model, GPU name, thread count, library versions."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: str) -> str:
    """A readable name of ``device``: the GPU's name for CUDA, the CPU model otherwise."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_model()


def hardware_info(device: str = "cpu") -> dict[str, Any]:
    """Device, CPU model, logical cores, torch threads and versions, for a results file."""
    import os

    import torch

    info: dict[str, Any] = {
        "device": device,
        "device_name": device_name(device),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if device.startswith("cuda"):
        info["cuda"] = torch.version.cuda
    return info
