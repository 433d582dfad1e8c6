"""Evaluation of a run against metrics computed by hand from the mask files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import zoo
from polypseg.data import Split, read_mask
from polypseg.evaluation import evaluate_run
from polypseg.training.runs import create_run
from polypseg.training.synthetic import make_synthetic

SIZE = 32


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six synthetic polyps at 32 px plus one image whose mask is empty."""
    folder = make_synthetic(tmp_path_factory.mktemp("eval") / "polyps", n=6, size=SIZE)
    image = cv2.imread(str(folder / "images" / "synth_0000.png"))
    cv2.imwrite(str(folder / "images" / "empty.png"), image)
    cv2.imwrite(str(folder / "masks" / "empty.png"), np.zeros((SIZE, SIZE), np.uint8))
    return folder


def _split() -> Split:
    sets = {
        "train": ["synth_0000", "synth_0001"],
        "val": ["synth_0002"],
        "test": ["synth_0003", "synth_0004", "synth_0005", "empty"],
    }
    return Split(dataset="kvasir-seg", rule="hand-made", seed=0, sets=sets)


def _constant_run(folder: Path, logit: float) -> Path:
    """A run whose model predicts ``logit`` everywhere (all polyp if > 0, none if < 0)."""
    model = zoo.create("unet", width=2, depth=2)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(logit)
    return create_run(folder, model, SIZE, _split())


def _masks(data: Path) -> dict[str, np.ndarray]:
    return {s: read_mask(data / "masks" / f"{s}.png") for s in _split().sets["test"]}


def test_all_polyp_prediction_matches_hand_computation(data: Path, tmp_path: Path) -> None:
    run = _constant_run(tmp_path / "all", logit=10.0)
    result = evaluate_run(run, data, subset="test")
    rows = {r["stem"]: r for r in result["images"]}
    n = SIZE * SIZE
    for stem, mask in _masks(data).items():
        y = int(mask.sum())  # the prediction P is the whole image: |P| = n, TP = |Y|
        row = rows[stem]
        if y == 0:
            assert (row["dice"], row["iou"], row["precision"], row["recall"]) == (0, 0, 0, 0)
            assert math.isnan(row["hd95"])
            continue
        assert row["dice"] == pytest.approx(2 * y / (y + n))
        assert row["iou"] == pytest.approx(y / n)
        assert row["precision"] == pytest.approx(y / n)
        assert row["recall"] == pytest.approx(1.0)
        assert row["hd95"] > 0
    summary = result["summary"]
    dices = [rows[s]["dice"] for s in rows]
    assert summary["dice"]["mean"] == pytest.approx(float(np.mean(dices)))
    assert summary["dice"]["std"] == pytest.approx(float(np.std(dices)))
    assert summary["hd95"]["n"] == 3 and summary["hd95"]["n_excluded"] == 1
    assert result["split"]["matches_training"] and result["n_images"] == 4

    written = json.loads((run / "eval" / "test.json").read_text())
    assert written["summary"] == json.loads(json.dumps(summary))
    csv_lines = (run / "eval" / "test.csv").read_text().strip().splitlines()
    assert csv_lines[0].startswith("stem,dice,iou,precision,recall,hd95") and len(csv_lines) == 5


def test_no_polyp_prediction_and_empty_conventions(data: Path, tmp_path: Path) -> None:
    run = _constant_run(tmp_path / "none", logit=-10.0)
    result = evaluate_run(run, data, subset="test", tta="rot90")
    rows = {r["stem"]: r for r in result["images"]}
    assert (rows["empty"]["dice"], rows["empty"]["precision"], rows["empty"]["recall"]) == (1, 1, 1)
    for stem in ("synth_0003", "synth_0004", "synth_0005"):
        assert (rows[stem]["dice"], rows[stem]["precision"], rows[stem]["recall"]) == (0, 0, 0)
    assert result["summary"]["dice"]["mean"] == pytest.approx(0.25)
    assert result["summary"]["hd95"]["mean"] is None
    assert result["summary"]["hd95"]["n_excluded"] == 4
    assert (run / "eval" / "test-tta-rot90.json").is_file()


def test_a_partial_run_records_what_it_learned(data: Path, tmp_path: Path) -> None:
    model = zoo.create("p4-partial", width=2, depth=2)
    with torch.no_grad():
        model.decoder[-1][-1][1].subset.logits.fill_(-1.0)  # the last layer keeps 0 degrees
    result = evaluate_run(create_run(tmp_path / "partial", model, SIZE, _split()), data)
    learned = result["learned_symmetry"]
    assert learned["summary"]["layers_reduced"] == 1 and learned["layers"][-1]["kept"] == ["0°"]
    assert "learned_symmetry" not in evaluate_run(_constant_run(tmp_path / "u", 1.0), data)


def test_channels_last_and_nchw_evaluations_agree(data: Path, tmp_path: Path) -> None:
    """A model with non-trivial norms (its head norm included) scores the same in both memory
    formats: its logits differ by float rounding only, far from the threshold here."""
    torch.manual_seed(0)
    model = zoo.create("p4", width=2, depth=2)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, SIZE, SIZE) * 2 + 0.5)
    run = create_run(tmp_path / "p4", model.eval(), SIZE, _split())
    last = evaluate_run(run, data, channels_last=True, write=False)
    nchw = evaluate_run(run, data, channels_last=False, write=False)
    for row_last, row_nchw in zip(last["images"], nchw["images"], strict=True):
        assert row_last["stem"] == row_nchw["stem"]
        assert abs(row_last["dice"] - row_nchw["dice"]) <= 1e-6
        assert row_last["pred_fraction"] == row_nchw["pred_fraction"]
