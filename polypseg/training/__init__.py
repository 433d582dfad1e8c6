"""Training of segmentation models: configuration, loop, resume state, DDP, logs.

Library entry points::

    from polypseg.training import TrainConfig, build_config, train
    run_dir = train(TrainConfig(variant="p4", data="../shared/data/Kvasir-SEG", epochs=50))

``train`` is also what ``polypseg train`` (and ``torchrun ... -m polypseg train``) calls.
The names are loaded on first use (PEP 562): ``polypseg.training.config`` (what
``polypseg --help`` reads) loads no torch, the loop does.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["StepInfo", "TrainCallback", "TrainConfig", "build_config", "read_yaml", "train"]

#: The module that defines each public name.
_HOMES = {
    "TrainConfig": "config",
    "build_config": "config",
    "read_yaml": "config",
    "StepInfo": "loop",
    "TrainCallback": "loop",
    "train": "loop",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(f"polypseg.training.{_HOMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'polypseg.training' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
