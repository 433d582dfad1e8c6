"""Peak-memory probe for the CPU speed benchmark: ``python -m polypseg.bench.memprobe JSON``.

Builds one model (a spec of :func:`polypseg.bench.speed.build_from_spec`) and its input, notes
the resident set size (RSS) as the baseline, then runs one inference step (eval mode,
``inference_mode``) and one training step (forward + backward + Adam update) and prints
``{"infer": MiB, "train": MiB, "method": ...}``: how far the peak RSS of the process rose above
the baseline during each step. On Linux the peak (``VmHWM``) is reset before each step by
writing ``5`` to ``/proc/self/clear_refs``; where that is not possible the rise of
``ru_maxrss`` is used, and only the first step is meaningful. One fresh process per model,
since a process's peak RSS never goes down by itself.
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


def probe(spec: dict, batch: int, size: int, threads: int) -> dict[str, float | str]:
    """Peak RSS rise (MiB) of one inference and one training step of the model ``spec``."""
    import torch

    from polypseg.bench.speed import build_from_spec, infer_step_fn, train_step_fn

    torch.set_num_threads(max(1, threads))
    torch.manual_seed(0)
    model = build_from_spec(spec)
    x = torch.randn(batch, 3, size, size)
    y = (torch.rand(batch, 1, size, size) > 0.5).float()
    baseline = _status_mib("VmRSS") or _maxrss_mib()
    model.eval()
    infer, method = peak_rise(infer_step_fn(model, x), baseline)
    model.train()
    train, _ = peak_rise(train_step_fn(model, x, y), baseline)
    return {"infer": infer, "train": train, "method": method}


def main(argv: list[str]) -> int:
    """Entry point: one JSON argument with spec, batch, size, threads."""
    args = json.loads(argv[0])
    print(json.dumps(probe(args["spec"], args["batch"], args["size"], args["threads"])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
