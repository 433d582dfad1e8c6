"""Training of segmentation models: configuration, loop, resume state, DDP, logs.

Library entry points::

    from polypseg.training import TrainConfig, build_config, train
    run_dir = train(TrainConfig(model="p4", data="../shared/data/Kvasir-SEG", epochs=50))

``train`` is also what ``polypseg train`` (and ``torchrun ... -m polypseg train``) calls.
"""

from __future__ import annotations

from polypseg.training.config import TrainConfig, build_config, read_yaml
from polypseg.training.loop import StepInfo, TrainCallback, train

__all__ = ["StepInfo", "TrainCallback", "TrainConfig", "build_config", "read_yaml", "train"]
