"""Fixtures of the report tests: a tiny demo (two trained runs, their evaluations and one
sweep) on generated polyps."""

from __future__ import annotations

from pathlib import Path

import pytest

from polypseg.demo import DemoSettings, run_demo


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``OUT`` of a tiny synthetic demo: ``unet/``, ``p4/``, ``sweep/``, ``report.html``."""
    out = tmp_path_factory.mktemp("report") / "demo"
    run_demo(DemoSettings(
        out=out, synthetic=True, size=32, depth=2, epochs=1, batch_size=4, n_train=8, n_val=4,
        n_test=5, n_sweep=4, models=(("unet", 2), ("p4", 1)), angles=[0.0, 45.0, 90.0],
        progress=False, n_synthetic=40,
    ))
    return out
