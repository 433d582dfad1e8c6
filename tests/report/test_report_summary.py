"""The numbers of the report: accuracy drop, rows over seeds and images, comparisons, and the
equivalent training command."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from report_helpers import per_angle, quality_doc

from polypseg.bench.collect import sweep_summary
from polypseg.report.inputs import QualityResult, collect
from polypseg.report.provenance import train_command
from polypseg.report.summary import (
    accuracy_drop,
    accuracy_drop_of_summary,
    comparison_rows,
    quality_rows,
    run_row,
)


def test_accuracy_drop_is_upright_minus_turned() -> None:
    run = {"per_angle": per_angle({0.0: 0.8, 45.0: 0.7, 90.0: 0.6, 135.0: 0.5})}
    assert accuracy_drop(run) == pytest.approx(0.8 - (0.7 + 0.6 + 0.5) / 3)
    assert accuracy_drop({"per_angle": per_angle({45.0: 0.8, 90.0: 0.7})}) is None
    assert accuracy_drop({"per_angle": per_angle({0.0: 0.8})}) is None


def test_accuracy_drop_from_a_bench_summary_agrees_with_the_sweep() -> None:
    accuracy = {float(a): 0.3 + 0.01 * (a % 70) for a in range(0, 360, 30)}
    run = {"per_angle": per_angle(accuracy)}
    summary = {**sweep_summary({"runs": [run]}), "accuracy_0": accuracy[0.0]}
    from_summary = accuracy_drop_of_summary(summary, list(accuracy))
    assert from_summary == pytest.approx(accuracy_drop(run), abs=1e-12)
    del summary["accuracy_0"]  # what the bench summary does not hold cannot be made up
    assert accuracy_drop_of_summary(summary, list(accuracy)) is None


def test_bench_rows_are_mean_and_std_over_seeds(tmp_path: Path) -> None:
    doc = quality_doc()
    rows = quality_rows(QualityResult(tmp_path / "q.json", doc))
    unet = next(r for r in rows if r["label"] == "unet")
    assert unet["spread"] == "seeds" and unet["n"] == 2 and unet["dataset"] == "Kvasir-SEG"
    assert unet["params"] == 1000 and unet["macs_256"] == 2_000_000
    assert unet["metrics"]["dice"]["mean"] == pytest.approx(0.62)
    assert unet["metrics"]["dice"]["std"] == pytest.approx(statistics.stdev([0.60, 0.64]))
    assert unet["metrics"]["consistency_off90"]["mean"] == pytest.approx(0.825)
    drops = [accuracy_drop_of_summary(r["sweep"], [float(a) for a in range(0, 360, 45)])
             for r in doc["results"] if r["entry"] == "unet"]
    assert unet["metrics"]["accuracy_drop"]["mean"] == pytest.approx(statistics.fmean(drops))
    assert unet["metrics"]["accuracy_drop"]["std"] is not None
    assert unet["train_seconds"] == pytest.approx(100.5)


def test_run_rows_are_mean_and_std_over_test_images(demo: Path) -> None:
    import json

    view = next(v for v in collect([demo]).models if v.label == "p4")
    row = run_row(view, {"params": 123, "macs_256": 456})
    evaluated = json.loads((demo / "p4" / "eval" / "test.json").read_text())
    assert row["spread"] == "images" and row["n"] == evaluated["n_images"] > 0
    assert row["metrics"]["dice"]["mean"] == evaluated["summary"]["dice"]["mean"]
    assert row["metrics"]["dice"]["std"] == evaluated["summary"]["dice"]["std"]
    assert row["metrics"]["consistency_off90"]["mean"] is not None  # 45 degrees was swept
    assert row["train_seconds"] > 0 and row["params"] == 123


def test_comparisons_are_passed_through_with_dataset_labels(tmp_path: Path) -> None:
    item = {"dataset": "kvasir", "entry": "p4", "baseline": "unet", "diff_mean": 0.085,
            "ci_low": 0.02, "ci_high": 0.15, "verdict": "better", "n_images": 6, "n_seeds": 2}
    result = QualityResult(tmp_path / "q.json", quality_doc(comparisons=[item]))
    assert comparison_rows(result) == [{**item, "dataset": "Kvasir-SEG"}]
    assert comparison_rows(QualityResult(tmp_path / "q.json", quality_doc())) == []


def test_equivalent_train_command(tmp_path: Path) -> None:
    config = {"model": "p4", "data": "../shared/data/Kvasir-SEG", "out": "runs/p4 x",
              "epochs": 12, "batch_size": 8, "lr": 0.001, "size": 64, "rot_aug": True,
              "min_lr_ratio": 0.05, "progress": None, "quiet": True, "split_seed": 0}
    assert train_command(config) == (
        "polypseg train --model p4 --data ../shared/data/Kvasir-SEG --epochs 12 --size 64 "
        "--out 'runs/p4 x' --rot-aug  # and in a --config file: min_lr_ratio: 0.05")


def test_the_equivalent_command_of_a_real_run_is_accepted(demo: Path) -> None:
    import json
    import shlex

    from typer.testing import CliRunner

    from polypseg.cli import app

    command = train_command(json.loads((demo / "p4" / "config.json").read_text()))
    args = shlex.split(command.split("  #")[0])[1:]
    # the parser knows every option (an unknown one fails parsing, before --help stops it)
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(app, [*args, "--no-such-option", "--help"]).exit_code == 2
