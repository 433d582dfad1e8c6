"""The resume state of a run: ``RUN/checkpoints/last_state.pt``.

One file, written atomically with ``torch.save`` and read with ``torch.load(weights_only=True)``
(no pickle of arbitrary objects): model, optimizer, scheduler and AMP scaler state dicts, the
position in training (epoch, batches done in that epoch, global step, the epoch's running loss),
the best validation Dice and the early-stopping counter, the per-epoch history, the run's
identity (variant, model kwargs, input size, split hash: a resume refuses any other) and the
Python / NumPy / torch (and CUDA) random states, stored as tensors, lists and plain numbers.

The data order is a pure function of ``(seed, epoch)`` (see :mod:`polypseg.training.sampling`),
so the state records where in that order to continue rather than the order itself.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polypseg.atomic import atomic_write_with
from polypseg.errors import RunError

FORMAT = "polypseg-train-state/1"
STATE_NAME = "last_state.pt"


def capture_rng() -> dict[str, Any]:
    """The Python, NumPy, torch and CUDA random states, as ``weights_only``-safe values."""
    py_version, py_internal, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, list(py_internal), py_gauss],
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64).copy()),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state().clone(),
        "cuda": [s.clone() for s in torch.cuda.get_rng_state_all()]
        if torch.cuda.is_available()
        else [],
    }
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set the random states captured by :func:`capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    npst = state["numpy"]
    keys = npst["keys"].numpy().astype(np.uint32)
    np.random.set_state((npst["name"], keys, npst["pos"], npst["has_gauss"], npst["gauss"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        # a resume may run on a host with fewer GPUs than the one that saved: restore the
        # generators of the GPUs present (set_rng_state_all would index past them)
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


def state_path(run_dir: str | Path) -> Path:
    """Where a run keeps its resume state."""
    return Path(run_dir) / "checkpoints" / STATE_NAME


def save_resume_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus the format tag) atomically with ``torch.save``."""
    payload = {"format": FORMAT, **state}
    atomic_write_with(path, lambda tmp: torch.save(payload, tmp))


def load_resume_state(path: str | Path) -> dict[str, Any]:
    """Read a resume state with ``weights_only=True``; :class:`RunError` if absent or bad."""
    path = Path(path)
    if not path.is_file():
        raise RunError(
            f"cannot resume: no resume state at {path} (was the run started with this --out?)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        # torch's own message suggests weights_only=False, i.e. running a pickle: never repeat it
        raise RunError(
            f"cannot resume: the resume state {path} is corrupt or truncated "
            f"({type(err).__name__}); move it away and train into a new --out, or restore it "
            "from a backup"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise RunError(f"cannot resume: {path} is not a polypseg resume state ({FORMAT})")
    return state


def check_identity(saved: dict[str, Any], current: dict[str, Any], run_dir: Path) -> None:
    """Raise :class:`RunError` naming each field where a resumed run differs from its origin.

    The model kwargs compare as rebuilt (``zoo.recorded_options``): a run recorded before an
    option existed matches the same model with that option at its old value."""
    import zoo

    saved, current = dict(saved), dict(current)
    for side in (saved, current):
        if isinstance(side.get("model"), dict):
            side["model"] = zoo.recorded_options(side["model"])
    diffs = [
        f"{key}: run has {saved.get(key)!r}, now {current.get(key)!r}"
        for key in sorted(set(saved) | set(current))
        if saved.get(key) != current.get(key)
    ]
    if diffs:
        raise RunError(
            f"cannot resume {run_dir}: it was trained with other settings ("
            + "; ".join(diffs)
            + "). Resume with the same model, size, split and batch size, "
            "or train into a new --out."
        )
