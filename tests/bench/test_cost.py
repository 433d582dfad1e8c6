"""Training-step cost: step times of a plan's entries and the compute-matched width (structure
and consistency only; the figures themselves are machine-dependent and not asserted)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from polypseg.bench.cost import TimedModel, match_step_time, parse_widths, step_times
from polypseg.cli import main
from polypseg.errors import PolypsegError


def test_parse_widths() -> None:
    assert parse_widths("3:6") == [3, 4, 5]
    assert parse_widths("2,8,4") == [2, 8, 4]
    for bad in ("a:b", "0,1", "5:5", ""):
        with pytest.raises(PolypsegError):
            parse_widths(bad)


def test_step_times_rows() -> None:
    import zoo

    models = [TimedModel("a", "unet", 2, 2), TimedModel("b", "p4", 1, 2)]
    rows = step_times(models, size=16, batch_size=2, repeats=2, warmup=1)
    assert [r["name"] for r in rows] == ["a", "b"]
    for row, spec in zip(rows, models, strict=True):
        model = zoo.create(spec.variant, in_channels=3, out_channels=1, width=spec.width,
                           depth=spec.depth)
        assert row["params"] == sum(p.numel() for p in model.parameters())
        assert len(row["step_seconds_all"]) == 2 and row["step_seconds"] > 0
        assert row["seconds_per_image"] == pytest.approx(row["step_seconds"] / 2)


def test_match_picks_the_candidate_nearest_in_ratio() -> None:
    result = match_step_time(TimedModel("ref", "p4", 1, 2), "unet", [1, 2, 3], size=16,
                             batch_size=2, depth=2, repeats=2)
    ratios = {r["width"]: r["ratio"] for r in result["candidates"]}
    assert set(ratios) == {1, 2, 3}
    for row in result["candidates"]:
        assert row["ratio"] == pytest.approx(row["step_seconds"]
                                             / result["reference"]["step_seconds"])
    assert result["width"] == min(ratios, key=lambda w: abs(math.log(ratios[w])))


def test_bench_cost_writes_every_training_entry(tiny_bench: Path, tmp_path: Path) -> None:
    out = tmp_path / "cost"
    assert main(["bench", "cost", "--plan", str(tiny_bench / "tiny.yaml"), "--repeats", "1",
                 "--out", str(out)]) == 0
    doc = json.loads((out / "cost-tiny.json").read_text())
    assert [m["name"] for m in doc["models"]] == ["unet", "p4"]
    assert doc["models"][0]["ratio"] == pytest.approx(1.0)
    assert "| p4 | p4 |" in (out / "cost-tiny.md").read_text()
