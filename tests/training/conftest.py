"""Fixtures of the training tests: a small synthetic dataset and tiny, fast configurations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from polypseg.training import TrainConfig
from polypseg.training.synthetic import make_synthetic


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 synthetic 64 px image/mask pairs in the Kvasir-SEG layout."""
    return make_synthetic(tmp_path_factory.mktemp("synthetic") / "polyps", n=20, size=64)


@pytest.fixture
def tiny_config(synthetic_data: Path, tmp_path: Path) -> Callable[..., TrainConfig]:
    """``tiny_config(**changes)``: 2 epochs x 2 steps of a width-2, depth-2 net at 32 px."""

    def make(**changes: Any) -> TrainConfig:
        values: dict[str, Any] = dict(
            variant="p4", data=str(synthetic_data), out=str(tmp_path / "run"), epochs=2,
            batch_size=2, size=32, width=2, depth=2, limit_train=4, limit_val=2,
            device="cpu", quiet=True,
        )
        values.update(changes)
        return TrainConfig(**values)

    return make
