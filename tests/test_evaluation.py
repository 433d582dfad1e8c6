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


def _test_set(folder: Path) -> Path:
    """A test set in the field's layout: images/ + masks/, same stems, png/jpg/tif, each of
    its own size (none of them the model's 32 px)."""
    rng = np.random.default_rng(3)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for stem, (height, width), suffix in (("a", (40, 56), ".png"), ("b", (27, 33), ".jpg"),
                                          ("c", (64, 48), ".tif")):
        image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        mask = np.zeros((height, width), np.uint8)
        mask[height // 4 : height // 2, width // 5 : width // 2] = 255
        cv2.imwrite(str(folder / "images" / f"{stem}{suffix}"), image)
        cv2.imwrite(str(folder / "masks" / f"{stem}{'.png' if suffix == '.jpg' else suffix}"),
                    mask)
    return folder


def test_a_test_set_folder_is_evaluated_whole_at_each_masks_size(tmp_path: Path) -> None:
    """No split file: every image; metrics at the mask's own size (an all-polyp prediction
    scores what the mask file gives by hand); the maps saved are the 8-bit maps scored."""
    import py_sod_metrics as sod

    from polypseg.cli import main

    test_set = _test_set(tmp_path / "CVC-300")
    run = _constant_run(tmp_path / "all", logit=10.0)
    out = tmp_path / "out"
    assert main(["evaluate", str(run), "--data", str(test_set), "--out", str(out),
                 "--save-maps", "--no-progress"]) == 0
    written = json.loads((out / "all-cvc-300.json").read_text())
    assert written["n_images"] == 3 and written["split"]["sha256"] is None
    assert written["split"]["overlap_with_training"] == 0
    for row in written["images"]:
        mask = read_mask(next((test_set / "masks").glob(f"{row['stem']}.*")))
        assert (row["height"], row["width"]) == mask.shape
        y, n = int(mask.sum()), mask.size
        assert row["dice"] == pytest.approx(2 * y / (y + n))
        saved = cv2.imread(str(out / "maps" / f"{row['stem']}.png"), cv2.IMREAD_UNCHANGED)
        assert saved.dtype == np.uint8 and saved.shape == mask.shape
        for name, metric, key in (("mae", sod.MAE(), "mae"), ("s_measure", sod.Smeasure(), "sm")):
            metric.step(pred=saved, gt=mask * 255)
            assert row[name] == pytest.approx(float(metric.get_results()[key]), abs=1e-12)
    for name in ("mdice", "miou", "s_measure", "weighted_f", "e_measure_mean", "e_measure_max",
                 "mae"):
        assert set(written["summary"][name]) >= {"mean", "std"}


def test_a_varying_model_at_native_size_matches_its_saved_maps(data: Path, tmp_path: Path) -> None:
    """A random (untrained) model: the JSON's field suite equals pysodmetrics on the PNG maps
    it saved, and its thresholded Dice equals a Dice computed from those maps by hand."""
    import py_sod_metrics as sod

    torch.manual_seed(0)
    model = zoo.create("unet", width=2, depth=2)
    with torch.no_grad():  # a head that spreads the untrained features over (0, 1)
        torch.nn.init.normal_(model.head.weight, std=5.0)
    run = create_run(tmp_path / "random", model, SIZE, _split())
    test_set = _test_set(tmp_path / "TestDataset" / "ETIS-LaribPolypDB")
    result = evaluate_run(run, test_set, subset="all", save_maps=True)
    rows = {r["stem"]: r for r in result["images"]}
    assert result["subset"] == "all-etis-laribpolypdb"
    assert (run / "eval" / "all-etis-laribpolypdb.json").is_file()
    for stem, row in rows.items():
        saved = cv2.imread(str(run / "eval" / "maps" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        mask = read_mask(next((test_set / "masks").glob(f"{stem}.*")))
        assert saved.max() > saved.min()  # the model's map varies
        wfm = sod.WeightedFmeasure()
        wfm.step(pred=saved, gt=mask * 255)
        assert row["weighted_f"] == pytest.approx(float(wfm.get_results()["wfm"]), abs=1e-12)
        pred = saved >= 128  # 0.5 on the 8-bit map, up to its rounding
        dice = 2 * np.sum(pred & (mask > 0)) / max(1, pred.sum() + mask.sum())
        assert row["dice"] == pytest.approx(dice, abs=0.02)


def test_a_folder_the_split_does_not_describe_needs_no_split_but_a_given_one_must_fit(
    data: Path, tmp_path: Path
) -> None:
    from polypseg.errors import DataError

    run = _constant_run(tmp_path / "all", logit=10.0)
    other = _test_set(tmp_path / "ETIS-LaribPolypDB")
    with pytest.raises(DataError, match="is for kvasir-seg"):
        evaluate_run(run, other, split_file=run / "split.json", write=False)
    with pytest.raises(DataError):
        evaluate_run(run, other, subset="val", write=False)
    with pytest.raises(DataError, match="expected one of train, val, test, all"):
        evaluate_run(run, other, subset="everything", write=False)
    counted = evaluate_run(run, data, subset="all", write=False)
    assert counted["n_images"] == 7 and counted["split"]["overlap_with_training"] == 3
