"""Per-image metrics against hand computations, and the empty-mask conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polypseg import metrics


def _masks() -> tuple[torch.Tensor, torch.Tensor]:
    """Four cases on 8x8: partial overlap, missed polyp, false alarm, both empty."""
    pred = torch.zeros(4, 1, 8, 8)
    target = torch.zeros(4, 1, 8, 8)
    pred[0, 0, 0:4, 0:4] = 1  # 16 px
    target[0, 0, 2:6, 0:4] = 1  # 16 px, overlap rows 2-3 x 4 cols = 8 px
    target[1, 0, 0:2, 0:2] = 1  # prediction empty
    pred[2, 0, 0:2, 0:2] = 1  # target empty
    return pred, target


def test_overlap_matches_hand_computation() -> None:
    pred, target = _masks()
    tp, fp, fn = 8, 8, 8
    assert metrics.dice(pred, target)[0] == pytest.approx(2 * tp / (2 * tp + fp + fn))  # 0.5
    assert metrics.iou(pred, target)[0] == pytest.approx(tp / (tp + fp + fn))  # 1/3
    assert metrics.precision(pred, target)[0] == pytest.approx(tp / (tp + fp))
    assert metrics.recall(pred, target)[0] == pytest.approx(tp / (tp + fn))
    hd = metrics.hd95(pred, target)[0]
    assert 0 < hd <= 4.0  # the squares are 2 rows apart at most 4 px


def test_empty_mask_conventions() -> None:
    pred, target = _masks()
    table = metrics.per_image(pred, target)
    for name in ("dice", "iou", "precision", "recall"):
        assert table[name][1:] == [0.0, 0.0, 1.0], name
    assert all(math.isnan(v) for v in table["hd95"][1:])


def test_threshold_and_shape_checks() -> None:
    probs = torch.tensor([0.2, 0.5, 0.7]).view(1, 1, 1, 3)
    assert metrics.binarize(probs).flatten().tolist() == [0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        metrics.dice(torch.zeros(2, 8, 8), torch.zeros(2, 8, 8))


def test_summarize_leaves_nan_out_and_counts_it() -> None:
    stats = metrics.summarize([1.0, 3.0, float("nan")])
    assert stats["n"] == 2 and stats["n_excluded"] == 1
    assert stats["mean"] == 2.0 and stats["std"] == 1.0
    assert stats["median"] == 2.0 and stats["q1"] == 1.5 and stats["q3"] == 2.5
    empty = metrics.summarize([float("nan")])
    assert empty["mean"] is None and empty["n_excluded"] == 1


# --- the field's suite (pysodmetrics) -------------------------------------------------------


def _field_fixture() -> list[tuple[np.ndarray, np.ndarray]]:
    """Probability maps (8-bit) and masks of different sizes: smooth blobs, a noisy map, a
    constant map and a map of an empty mask."""
    rng = np.random.default_rng(7)
    cases = []
    for height, width, (cy, cx, r) in ((24, 32, (10, 14, 6)), (40, 28, (22, 12, 9)),
                                       (30, 30, (15, 15, 4))):
        yy, xx = np.mgrid[:height, :width]
        distance = np.hypot(yy - cy, xx - cx)
        mask = (distance <= r).astype(np.uint8)
        prob = np.clip(1.2 - distance / (1.5 * r) + 0.15 * rng.standard_normal(mask.shape), 0, 1)
        cases.append((metrics.probability_map_u8(prob), mask))
    cases.append((np.full((20, 20), 77, np.uint8), cases[0][1][:20, :20].copy()))
    cases.append((metrics.probability_map_u8(rng.random((16, 24)) * 0.6), np.zeros((16, 24),
                                                                                np.uint8)))
    return cases


def _hand_threshold_curves(prob_u8: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """Dice and IoU at the 256 thresholds, as PraNet's evaluation states them: min-max
    normalise the map, threshold at t = 255 .. 0 of its 8 bits, 0 where nothing is counted."""
    pred = prob_u8.astype(np.float64) / 255.0
    if pred.max() != pred.min():
        pred = (pred - pred.min()) / (pred.max() - pred.min())
    levels = np.floor(pred * 255.0)
    truth = mask > 0
    dices, ious = [], []
    for t in range(255, -1, -1):
        binary = levels >= t
        tp = np.sum(binary & truth)
        fp = np.sum(binary & ~truth)
        fn = np.sum(~binary & truth)
        dices.append(2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0)
        ious.append(tp / (tp + fp + fn) if tp + fp + fn else 0.0)
    return np.array(dices), np.array(ious), pred, truth


def test_field_suite_equals_pysodmetrics_and_a_hand_computed_mdice() -> None:
    import py_sod_metrics as sod

    cases = _field_fixture()
    field = metrics.FieldMetrics()
    for prob, mask in cases:
        field.add(prob, mask)
    table = field.table()
    assert set(table) == set(metrics.FIELD_METRIC_NAMES)
    assert all(len(values) == len(cases) for values in table.values())

    # the field's own numbers: pysodmetrics accumulating over the whole set, as its README does
    overlap = sod.FmeasureV2(metric_handlers={
        "dice": sod.DICEHandler(with_dynamic=True, with_adaptive=False),
        "iou": sod.IOUHandler(with_dynamic=True, with_adaptive=False),
    })
    sm, em, wfm, mae = sod.Smeasure(), sod.Emeasure(), sod.WeightedFmeasure(), sod.MAE()
    for prob, mask in cases:
        for metric in (overlap, sm, em, wfm, mae):
            metric.step(pred=prob, gt=mask * 255)
    curves = overlap.get_results()
    curve = em.get_results()["em"]["curve"]
    expected = {
        "mdice": float(np.mean(curves["dice"]["dynamic"])),
        "miou": float(np.mean(curves["iou"]["dynamic"])),
        "s_measure": float(sm.get_results()["sm"]),
        "weighted_f": float(wfm.get_results()["wfm"]),
        "e_measure_mean": float(np.mean(curve)),
        "e_measure_max": float(np.max(curve)),
        "mae": float(mae.get_results()["mae"]),
    }
    summary = metrics.summarize_all(table)
    for name, value in expected.items():
        assert summary[name]["mean"] == pytest.approx(value, rel=1e-9, abs=1e-12), name

    # mDice, mIoU and MAE by hand: per image over 256 thresholds, then over images
    hand = [_hand_threshold_curves(prob, mask) for prob, mask in cases]
    assert table["mdice"] == pytest.approx([d.mean() for d, _, _, _ in hand], abs=1e-12)
    assert table["miou"] == pytest.approx([i.mean() for _, i, _, _ in hand], abs=1e-12)
    assert table["mae"] == pytest.approx([np.abs(p - t).mean() for _, _, p, t in hand], abs=1e-12)
    assert 0.3 < summary["mdice"]["mean"] < 0.95  # the fixture is neither trivial nor empty
    assert table["mdice"][-1] == 0.0  # an empty mask: no threshold counts (pysodmetrics' rule)


def test_probability_map_u8_rounds_and_checks_shape() -> None:
    prob = np.array([[0.0, 0.5, 1.0], [1 / 255, 0.499 / 255, 2.0]])
    assert metrics.probability_map_u8(prob).tolist() == [[0, 128, 255], [1, 0, 255]]
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        metrics.probability_map_u8(np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="8-bit"):
        metrics.FieldMetrics().add(np.zeros((4, 4)), np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="differ in size"):
        metrics.FieldMetrics().add(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8))
