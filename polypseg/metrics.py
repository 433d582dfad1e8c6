"""Per-image segmentation metrics of binary masks (foreground only), through MONAI.

All functions take binary masks ``(B, 1, H, W)`` (bool or {0,1} floats: a prediction is
thresholded *before* it gets here) and return one value per image, shape ``(B,)``.

Empty-mask conventions (``P`` = predicted foreground, ``Y`` = ground-truth foreground):

=============  ===================  ====================  ==================
metric         P and Y both empty   P empty, Y not        Y empty, P not
=============  ===================  ====================  ==================
Dice, IoU      1                    0                     0
precision      1                    0                     0
recall         1                    0                     0
HD95           NaN (excluded)       NaN (excluded)        NaN (excluded)
=============  ===================  ====================  ==================

In words: predicting "no polyp" on an image without a polyp is a perfect score, any other
empty case scores 0, and a Hausdorff distance is only defined when both masks are non-empty;
:func:`summarize` leaves NaN values out of the mean and reports how many it left out.
HD95 is in pixels of the evaluated masks (MONAI ``compute_hausdorff_distance`` with
``percentile=95``, Euclidean distance, symmetric).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import torch

METRIC_NAMES: tuple[str, ...] = ("dice", "iou", "precision", "recall", "hd95")


def _as_float(mask: torch.Tensor) -> torch.Tensor:
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"expected binary masks of shape (B, 1, H, W), got {tuple(mask.shape)}")
    return mask.detach().float()


def binarize(probs: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """``probs >= threshold`` as {0,1} floats (the one place a threshold is applied)."""
    return (probs >= threshold).float()


def dice(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice ``2|P∩Y| / (|P| + |Y|)`` per image; 1 when both masks are empty."""
    from monai.metrics import compute_dice

    return compute_dice(_as_float(pred), _as_float(target), ignore_empty=False)[:, 0]


def iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Intersection over union ``|P∩Y| / |P∪Y|`` per image; 1 when both masks are empty."""
    from monai.metrics import compute_iou

    return compute_iou(_as_float(pred), _as_float(target), ignore_empty=False)[:, 0]


def _confusion(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MONAI confusion counts ``(B, 4)``: TP, FP, TN, FN."""
    from monai.metrics import get_confusion_matrix

    return get_confusion_matrix(_as_float(pred), _as_float(target))[:, 0, :]


def _ratio_with_convention(
    numerator: torch.Tensor, denominator: torch.Tensor, both_empty: torch.Tensor
) -> torch.Tensor:
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    value = torch.where(denominator > 0, numerator / safe, torch.zeros_like(numerator))
    return torch.where(both_empty, torch.ones_like(value), value)


def precision(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``TP / (TP + FP)`` per image; 1 when both masks are empty, 0 when only P is empty."""
    counts = _confusion(pred, target)
    tp, fp, fn = counts[:, 0], counts[:, 1], counts[:, 3]
    return _ratio_with_convention(tp, tp + fp, (tp + fp + fn) == 0)


def recall(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``TP / (TP + FN)`` per image; 1 when both masks are empty, 0 when only Y is empty."""
    counts = _confusion(pred, target)
    tp, fp, fn = counts[:, 0], counts[:, 1], counts[:, 3]
    return _ratio_with_convention(tp, tp + fn, (tp + fp + fn) == 0)


def hd95(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """95th-percentile symmetric Hausdorff distance (pixels) per image; NaN if a mask is empty."""
    from monai.metrics import compute_hausdorff_distance

    pred, target = _as_float(pred), _as_float(target)
    out = torch.full((pred.shape[0],), float("nan"), dtype=torch.float64)
    both = (pred.flatten(1).sum(1) > 0) & (target.flatten(1).sum(1) > 0)
    if both.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MONAI warns on empty masks; excluded above
            values = compute_hausdorff_distance(
                pred[both], target[both], include_background=True, percentile=95
            )
        out[both] = values[:, 0].double().cpu()
    return out


def per_image(pred: torch.Tensor, target: torch.Tensor) -> dict[str, list[float]]:
    """Every metric of :data:`METRIC_NAMES` per image, as lists of Python floats."""
    functions = {"dice": dice, "iou": iou, "precision": precision, "recall": recall, "hd95": hd95}
    return {name: [float(v) for v in functions[name](pred, target).cpu()] for name in METRIC_NAMES}


def summarize(values: Iterable[float]) -> dict[str, float | int | None]:
    """Mean, standard deviation (population, ``ddof=0``), quartiles, min and max of the finite
    values, with ``n`` (values used) and ``n_excluded`` (NaN values left out)."""
    all_values = [float(v) for v in values]
    finite = sorted(v for v in all_values if math.isfinite(v))
    stats: dict[str, float | int | None] = {
        "n": len(finite),
        "n_excluded": len(all_values) - len(finite),
    }
    if not finite:
        stats.update(mean=None, std=None, q1=None, median=None, q3=None, min=None, max=None)
        return stats
    t = torch.tensor(finite, dtype=torch.float64)
    q = torch.quantile(t, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    stats.update(
        mean=float(t.mean()),
        std=float(t.std(unbiased=False)),
        q1=float(q[0]),
        median=float(q[1]),
        q3=float(q[2]),
        min=finite[0],
        max=finite[-1],
    )
    return stats


def summarize_all(table: dict[str, Sequence[float]]) -> dict[str, dict[str, float | int | None]]:
    """:func:`summarize` of each column of a ``{metric: values}`` table."""
    return {name: summarize(values) for name, values in table.items()}
