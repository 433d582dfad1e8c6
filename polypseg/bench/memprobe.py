"""Peak-memory probe of the speed benchmark: ``python -m polypseg.bench.memprobe JSON``.

Builds one model (a spec of :func:`polypseg.bench.speed.build_from_spec`) and its input in a
fresh process, so no other model is resident, then runs one inference step (eval mode,
``inference_mode``) and one training step (forward + backward + Adam update) and prints
``{"infer": MiB, "train": MiB, "method": ...}``:

* CPU: how far the peak resident set size (RSS) of the process rose above the RSS after building
  the model and its input. On Linux the peak (``VmHWM``) is reset before each step by writing
  ``5`` to ``/proc/self/clear_refs``; where that is not possible the rise of ``ru_maxrss`` is
  used, and only the first step is meaningful. One fresh process per model, since a process's
  peak RSS never goes down by itself.
* CUDA: ``torch.cuda.max_memory_allocated`` over each step (weights, optimiser state and
  activations of this one model), after ``reset_peak_memory_stats``.
"""

from __future__ import annotations

import json
import resource
import sys
from collections.abc import Callable
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def _status_mib(field: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        _CLEAR.write_text("5")
    except OSError:
        return False
    return True


def _maxrss_mib() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / 1024 if sys.platform != "darwin" else usage / 2**20  # Linux: KiB


def peak_rise(step: Callable[[], None], baseline: float) -> tuple[float, str]:
    """Peak RSS during ``step`` minus ``baseline`` (MiB), and the method used."""
    if _reset_peak() and _status_mib("VmHWM") is not None:
        step()
        return _status_mib("VmHWM") - baseline, "VmHWM reset via /proc/self/clear_refs"
    before = _maxrss_mib()
    step()
    return max(0.0, _maxrss_mib() - max(before, baseline)), "ru_maxrss rise"


def cuda_peak(step: Callable[[], None], device: object) -> float:
    """Peak allocated CUDA memory (MiB) during one call of ``step``."""
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def probe(
    spec: dict, batch: int, size: int, threads: int, device: str = "cpu"
) -> dict[str, float | str]:
    """Peak memory (MiB) of one inference and one training step of the model ``spec`` alone.

    Args:
        spec: the model as :func:`polypseg.bench.speed.build_from_spec` takes it.
        batch: images per step.
        size: side in pixels of the square random batch.
        threads: torch threads of this process (at least 1).
        device: ``cpu`` (peak rise of the process's resident memory) or ``cuda``
            (``torch.cuda.max_memory_allocated``).
    """
    import torch

    from polypseg.bench.speed import build_from_spec, infer_step_fn, train_step_fn

    torch.set_num_threads(max(1, threads))
    torch.manual_seed(0)
    dev = torch.device(device)
    model = build_from_spec(spec).to(dev)
    x = torch.randn(batch, 3, size, size, device=dev)
    y = (torch.rand(batch, 1, size, size, device=dev) > 0.5).float()
    if dev.type == "cuda":
        model.eval()
        infer = cuda_peak(infer_step_fn(model, x), dev)
        model.train()
        train = cuda_peak(train_step_fn(model, x, y), dev)
        method = "torch.cuda.max_memory_allocated, this model alone in its process"
        return {"infer": infer, "train": train, "method": method}
    baseline = _status_mib("VmRSS") or _maxrss_mib()
    model.eval()
    infer, method = peak_rise(infer_step_fn(model, x), baseline)
    model.train()
    train, _ = peak_rise(train_step_fn(model, x, y), baseline)
    return {"infer": infer, "train": train, "method": method}


def main(argv: list[str]) -> int:
    """Entry point: one JSON argument with spec, batch, size, threads (and device)."""
    args = json.loads(argv[0])
    result = probe(args["spec"], args["batch"], args["size"], args["threads"],
                   args.get("device", "cpu"))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
