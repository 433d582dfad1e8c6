"""Fixtures of tests/zoo; the reusable checks and builders live in ``equivariance.py``."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))  # `from equivariance import ...` in any mode

from equivariance import build

_CACHE: dict[tuple, nn.Module] = {}


@pytest.fixture(autouse=True)
def _one_thread():
    """Run each zoo test on one intra-op thread, then restore the setting.

    The tensors here are tiny: fanning a 32x32 conv out over threads costs more than it saves,
    and on a shared 2-core machine the threads' spin-waits made these tests ~10x slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model() -> Callable[..., nn.Module]:
    """``tiny_model(name, seed=0, dtype=torch.float64)``: a fresh copy of a cached tiny model.

    Building a variant once per session (e2cnn bases are slow to set up) and handing out deep
    copies keeps tests independent: a test may train or modify its copy.
    """

    def get(name: str, seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
        key = (name, seed, dtype)
        if key not in _CACHE:
            _CACHE[key] = build(name, seed, dtype)
        return copy.deepcopy(_CACHE[key])

    return get
