"""The negatives section of a quality benchmark: per-entry rates and with-vs-without pairs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bench_helpers import tiny_plan, write_dataset

from polypseg.bench.negatives import twin
from polypseg.bench.plan import load_plan
from polypseg.cli import main


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("negbench")
    tiny_plan(root, write_dataset(root), entries=[
        {"name": "unet", "variant": "unet", "width": 2},
        {"name": "unet+neg", "variant": "unet", "width": 2, "negatives": 0.5},
    ])
    assert main(["bench", "quality", "--plan", str(root / "tiny.yaml")]) == 0
    return root, json.loads((root / "results" / "quality-tiny.json").read_text())


def _eval(root: Path, entry: str) -> dict:
    return json.loads((root / "runs" / "kvasir" / entry / "seed0" / "bench" / entry
                       / "test.json").read_text())


def test_each_entry_reports_its_false_positives_and_frame_rates(doc: tuple[Path, dict]) -> None:
    root, results = doc
    rows = {r["entry"]: r for r in results["negatives"]["summary"]}
    assert set(rows) == {"unet", "unet+neg"}
    for entry, row in rows.items():
        evaluated = _eval(root, entry)
        fractions = [n["pred_fraction"] for n in evaluated["negatives"]["images"]]
        assert row["false_positive_rate"]["mean"] == pytest.approx(
            float(np.mean([f > 0.005 for f in fractions])))
        assert row["frame_specificity"]["mean"] == pytest.approx(
            evaluated["frame_level"]["specificity"])
        assert row["dice"]["mean"] == pytest.approx(evaluated["summary"]["dice"]["mean"])
    train = json.loads((root / "runs" / "kvasir" / "unet+neg" / "seed0" / "config.json")
                       .read_text())
    assert train["negatives"] == 0.5
    assert "negatives" not in json.loads((root / "runs" / "kvasir" / "unet" / "seed0" / "bench"
                                          / "spec.json").read_text()).get("train", {})


def test_with_negatives_is_paired_with_its_twin_without(doc: tuple[Path, dict]) -> None:
    root, results = doc
    plan = load_plan(root / "tiny.yaml")
    assert twin(plan, plan.entry("unet+neg")).name == "unet"
    assert twin(plan, plan.entry("unet")) is None
    (pair,) = results["negatives"]["comparisons"]
    assert (pair["entry"], pair["without"]) == ("unet+neg", "unet")
    fpr = {e: float(np.mean([n["pred_fraction"] > 0.005
                             for n in _eval(root, e)["negatives"]["images"]]))
           for e in ("unet", "unet+neg")}
    assert pair["false_positive"]["diff_mean"] == pytest.approx(fpr["unet+neg"] - fpr["unet"])
    low, high = pair["dice"]["ci_low"], pair["dice"]["ci_high"]
    assert low <= pair["dice"]["diff_mean"] <= high
    text = (root / "results" / "quality-tiny.md").read_text()
    assert "## Images without a polyp" in text and "| unet+neg vs unet |" in text
    assert "50% of each epoch negatives" in text  # the entries table says how it was trained
