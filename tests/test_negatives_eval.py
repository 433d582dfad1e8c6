"""False-positive rate on evaluation negatives and the frame-level rates, by hand."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import zoo
from polypseg.checkpoint import read_meta
from polypseg.data import Split, discover, read_mask
from polypseg.evaluation import evaluate_run, format_summary
from polypseg.negatives_eval import FP_AREA, calibrate_checkpoint
from polypseg.training.runs import create_run
from polypseg.training.synthetic import make_synthetic

SIZE = 32
TEST = ["synth_0003", "synth_0004", "synth_0005", "empty"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six synthetic polyps at 48 px plus one image whose mask is empty."""
    folder = make_synthetic(tmp_path_factory.mktemp("negeval") / "polyps", n=6, size=48)
    image = cv2.imread(str(folder / "images" / "synth_0000.png"))
    cv2.imwrite(str(folder / "images" / "empty.png"), image)
    cv2.imwrite(str(folder / "masks" / "empty.png"), np.zeros((48, 48), np.uint8))
    return folder


def _run(folder: Path, logit: float, decision: dict | None = None) -> Path:
    """A run whose model predicts ``logit`` everywhere."""
    model = zoo.create("unet", width=2, depth=2)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(logit)
    split = Split(dataset="kvasir-seg", rule="hand-made", seed=0,
                  sets={"train": ["synth_0000"], "val": ["synth_0001", "synth_0002"],
                        "test": TEST})
    return create_run(folder, model, SIZE, split,
                      extra_meta={"decision": decision} if decision else None)


def test_a_model_that_marks_everything_has_every_negative_false(data: Path, tmp_path: Path) -> None:
    result = evaluate_run(_run(tmp_path / "all", 10.0), data, subset="test")
    negatives = result["negatives"]
    assert negatives["n"] + negatives["n_skipped"] == 4 and negatives["n"] >= 3
    assert negatives["false_positive_rate"] == 1.0
    assert negatives["mean_pred_fraction"] == pytest.approx(1.0)
    masks = {s: read_mask(data / "masks" / f"{s}.png") for s in TEST}
    for row in negatives["images"]:  # recorded boxes, clear of their image's mask
        x0, y0, x1, y1 = row["box"]
        assert 0 <= x0 < x1 <= 48 and 0 <= y0 < y1 <= 48
        assert not masks[row["stem"]][y0:y1, x0:x1].any()
    frame = result["frame_level"]
    assert (frame["sensitivity"], frame["specificity"]) == (1.0, 0.0)  # default rule
    assert frame["decision"]["source"] == "default" and frame["n_positives"] == 4
    assert "false-positive rate 1.000" in format_summary(result)
    written = json.loads((tmp_path / "all" / "eval" / "test.json").read_text())
    assert written["negatives"]["images"] == json.loads(json.dumps(negatives["images"]))


def test_a_model_that_marks_nothing_has_no_false_positive(data: Path, tmp_path: Path) -> None:
    result = evaluate_run(_run(tmp_path / "none", -10.0), data, subset="test", tta="rot90")
    assert result["negatives"]["false_positive_rate"] == 0.0
    assert result["negatives"]["mean_pred_fraction"] == 0.0
    assert (result["frame_level"]["sensitivity"], result["frame_level"]["specificity"]) == (0, 1)


def test_evaluation_negatives_are_fixed(data: Path, tmp_path: Path) -> None:
    assert FP_AREA == 0.005
    run = _run(tmp_path / "all", 10.0)
    again = evaluate_run(run, data, subset="test", write=False)
    first = evaluate_run(run, data, subset="test", write=False)
    assert [r["box"] for r in again["negatives"]["images"]] == [
        r["box"] for r in first["negatives"]["images"]]  # fixed


def test_the_checkpoint_decision_is_chosen_on_validation_and_used(data: Path,
                                                                  tmp_path: Path) -> None:
    run = _run(tmp_path / "cal", 10.0)
    split = json.loads((run / "split.json").read_text())
    index = discover(data)
    val = [p for p in index.pairs if p.stem in split["sets"]["val"]]
    decision = calibrate_checkpoint(run / "checkpoints" / "best", val, 0.95)
    # every frame is all foreground: only thresholds above them all reach the specificity
    assert decision["val_specificity"] == 1.0 and decision["val_sensitivity"] == 0.0
    assert read_meta(run / "checkpoints" / "best").decision == decision
    frame = evaluate_run(run, data, subset="test", write=False)["frame_level"]
    assert frame["decision"]["source"] == "validation"
    assert (frame["sensitivity"], frame["specificity"]) == (0.0, 1.0)
    recorded = _run(tmp_path / "rec", 10.0, {"min_area_fraction": 0.5,
                                             "min_peak_probability": 0.5})
    frame = evaluate_run(recorded, data, subset="test", write=False)["frame_level"]
    assert (frame["sensitivity"], frame["specificity"]) == (1.0, 0.0)


def test_rot90_thresholds_are_chosen_on_rot90_maps_and_used_with_it(data: Path,
                                                                    tmp_path: Path) -> None:
    from polypseg.data.negatives import EVAL_SEED, fixed_negatives
    from polypseg.decision import for_tta, rates
    from polypseg.inference import predict_probs
    from polypseg.negatives_eval import features_of, predict_negatives
    from polypseg.opened import open_run
    from polypseg.training.datasets import eval_dataset

    torch.manual_seed(3)
    model = zoo.create("unet", width=4, depth=2)  # untrained: its maps change under rotation
    split = Split(dataset="kvasir-seg", rule="hand-made", seed=0,
                  sets={"train": ["synth_0000"], "val": ["synth_0001", "synth_0002"],
                        "test": TEST})
    run = create_run(tmp_path / "tta", model, SIZE, split)
    val = [p for p in discover(data).pairs if p.stem in split.sets["val"]]
    decision = calibrate_checkpoint(run / "checkpoints" / "best", val, 0.95)
    opened = open_run(run / "checkpoints" / "best")
    negatives, _ = fixed_negatives(val, EVAL_SEED)
    images = next(iter(torch.utils.data.DataLoader(eval_dataset(val, SIZE, 2), batch_size=8)))

    def features(tta: str | None) -> tuple[list, list]:
        rows = predict_negatives(opened.model, negatives, SIZE, 2, 0.5, tta)
        return (features_of(predict_probs(opened.model, images["image"], tta=tta)),
                [(r["largest_fraction"], r["peak"]) for r in rows])

    plain, rot90 = features(None), features("rot90")
    assert not np.allclose(plain[0], rot90[0], atol=1e-3)  # the maps differ: not vacuous
    for tta, (pos, neg) in ((None, plain), ("rot90", rot90)):
        rule = for_tta(decision, tta)
        got = rates(pos, neg, rule)  # the recorded validation rates are those of its own maps
        assert got["sensitivity"] == pytest.approx(rule["val_sensitivity"])
        assert got["specificity"] == pytest.approx(rule["val_specificity"])
        assert got["specificity"] >= 0.95
    used = evaluate_run(run, data, subset="test", tta="rot90", write=False)["frame_level"]
    assert used["decision"]["min_peak_probability"] == decision["by_tta"]["rot90"][
        "min_peak_probability"] and "rot90" in used["decision"]["source"]


@pytest.mark.parametrize("training", [True, False])
def test_predicting_negatives_leaves_the_callers_model_in_its_mode(data: Path,
                                                                   training: bool) -> None:
    from polypseg.data.negatives import EVAL_SEED, fixed_negatives
    from polypseg.negatives_eval import predict_negatives

    negatives, _ = fixed_negatives(discover(data).pairs[:3], EVAL_SEED)
    model = zoo.create("unet", width=2, depth=2).train(training)
    rows = predict_negatives(model, negatives, SIZE, 2, 0.5, tta="rot90")
    assert len(rows) == len(negatives) > 0
    assert model.training is training
