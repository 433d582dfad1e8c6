"""The tiny synthetic bench folder as a fixture (helpers in ``bench_helpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench_helpers import tiny_plan, write_dataset


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``Kvasir-SEG/`` and ``tiny.yaml`` (its runs and results go beside)."""
    root = tmp_path_factory.mktemp("bench")
    tiny_plan(root, write_dataset(root))
    return root
