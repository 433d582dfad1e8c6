"""The demo end to end, shrunk to seconds: synthetic data, tiny models, three angles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polypseg.demo import DemoSettings, find_shared_data, run_demo


def test_tiny_demo_on_synthetic_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = DemoSettings(
        out=tmp_path / "demo", synthetic=True, size=32, depth=2, epochs=1, batch_size=4,
        n_train=4, n_val=2, n_test=3, n_sweep=2, models=(("unet", 2), ("p4", 1)),
        angles=[0.0, 45.0, 90.0], progress=False, n_synthetic=30,
    )
    summary = run_demo(settings)
    assert set(summary["models"]) == {"unet", "p4"}
    # exact p4 equivariance, up to a pixel whose logit sits within rounding of the threshold
    # (the rotated batch runs through other kernels); a flip costs 1/(2 * foreground pixels)
    assert summary["models"]["p4"]["consistency_90"] >= 0.99
    for key in ("sweep_json", "sweep_csv"):
        assert Path(summary["files"][key]).is_file()
    for path in summary["files"]["sweep_figure"] + summary["files"]["training_figure"]:
        assert Path(path).is_file()
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["models"]
    printed = capsys.readouterr().out
    assert "demo results" in printed and "dice_vs_angle.png" in printed
    report = Path(summary["files"]["report"])
    assert report == tmp_path / "demo" / "report.html" and str(report) in printed
    page = report.read_text()
    assert "<h1>polypseg demo: unet, p4</h1>" in page and page.count('class="tile"') > 0

    again = run_demo(settings)  # finished runs are reused, not retrained
    assert again["models"]["p4"]["test_dice_mean"] == summary["models"]["p4"]["test_dice_mean"]


def test_shared_data_is_found_beside_the_repository() -> None:
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not (shared / "Kvasir-SEG").is_dir():
        pytest.skip(f"shared data not found at {shared}")
    assert find_shared_data() == shared / "Kvasir-SEG"
