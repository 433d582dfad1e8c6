"""Per-image metrics against hand computations, and the empty-mask conventions."""

from __future__ import annotations

import math

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
