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
``percentile=95``, Euclidean distance, symmetric); :mod:`polypseg.evaluation` evaluates at each
mask's own size, so these are the dataset's original pixels.

The field's suite (:class:`FieldMetrics`, :data:`FIELD_METRIC_NAMES`) takes the probability map
instead of a thresholded mask, as polyp papers report it (PraNet's evaluation toolbox), and is
computed by ``pysodmetrics`` (py_sod_metrics), not rewritten here. Each map is first quantised
to the 8-bit image the field's toolboxes read (:func:`probability_map_u8`, what ``evaluate
--save-maps`` writes), so the numbers equal the toolbox's on the saved maps. Conventions:

* the map is min-max normalised per image (``(p - min) / (max - min)``; a constant map is left
  as it is) and the mask is ``> 128`` of 0/255 (pysodmetrics ``prepare_data``, MATLAB's
  ``mapminmax``);
* ``mdice``, ``miou``: Dice and IoU at 256 thresholds (the normalised map times 255, floored,
  ``>= t`` for ``t = 255 .. 0``), averaged over the thresholds per image, then over images;
  an image whose mask and thresholded map are both empty scores 0 at that threshold
  (pysodmetrics ``DICEHandler``/``IOUHandler``);
* ``s_measure`` (alpha 0.5), ``weighted_f`` (beta 1; 0 on an empty mask), ``mae``: one value
  per image;
* ``e_measure_mean``: the mean of the image's E-measure curve over the 256 thresholds;
  ``e_measure_max``: the field reports the maximum over thresholds of the curve averaged over
  images, so each image's value is its E-measure at that one threshold (the mean over images
  is then exactly the field's max E-measure, and the std is the spread at that threshold).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch

METRIC_NAMES: tuple[str, ...] = ("dice", "iou", "precision", "recall", "hd95")
#: The field's suite on probability maps (:class:`FieldMetrics`), in the order tables show it.
FIELD_METRIC_NAMES: tuple[str, ...] = (
    "mdice",
    "miou",
    "s_measure",
    "weighted_f",
    "e_measure_mean",
    "e_measure_max",
    "mae",
)
#: Thresholds of the threshold-averaged metrics (mDice, mIoU, E-measure): 255 .. 0 of 8 bits.
THRESHOLDS = 256


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


# --- the field's suite on probability maps (pysodmetrics) -----------------------------------


def probability_map_u8(probs: np.ndarray) -> np.ndarray:
    """An ``(H, W)`` probability map in [0, 1] as the 8-bit image the field's toolboxes read:
    ``round(255 p)`` (values outside [0, 1] are clipped). Shape ``(H, W)`` ``uint8``."""
    values = np.asarray(probs, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"expected a probability map of shape (H, W), got {values.shape}")
    return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


class FieldMetrics:
    """Accumulates the field's suite over images, one :meth:`add` per image (pysodmetrics).

    Each image may have its own size. :meth:`table` gives ``{name: [value per image]}`` for
    every name of :data:`FIELD_METRIC_NAMES`, in the order the images were added; conventions
    in the module docstring.
    """

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {name: [] for name in FIELD_METRIC_NAMES}
        self.e_curves: list[np.ndarray] = []

    def add(self, prob_map: np.ndarray, mask: np.ndarray) -> dict[str, float]:
        """Score one image and return its values (``e_measure_max`` at the image's own best
        threshold, until :meth:`table` fixes the dataset's).

        Args:
            prob_map: ``(H, W)`` 8-bit map (:func:`probability_map_u8`).
            mask: ``(H, W)`` ground truth, foreground where non-zero (``{0, 1}`` or 0/255).
        """
        import py_sod_metrics as sod

        pred = np.asarray(prob_map)
        if pred.dtype != np.uint8:
            raise ValueError(f"expected an 8-bit probability map, got {pred.dtype}")
        gt = np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8)
        if pred.shape != gt.shape:
            raise ValueError(f"map {pred.shape} and mask {gt.shape} differ in size")
        overlap = sod.FmeasureV2(
            metric_handlers={
                "dice": sod.DICEHandler(with_dynamic=True, with_adaptive=False),
                "iou": sod.IOUHandler(with_dynamic=True, with_adaptive=False),
            }
        )
        structure, enhanced = sod.Smeasure(), sod.Emeasure()
        weighted, absolute = sod.WeightedFmeasure(), sod.MAE()
        for metric in (overlap, structure, enhanced, weighted, absolute):
            metric.step(pred=pred, gt=gt)
        curves = overlap.get_results()
        e_curve = np.asarray(enhanced.get_results()["em"]["curve"], dtype=np.float64)
        row = {
            "mdice": float(np.mean(curves["dice"]["dynamic"])),
            "miou": float(np.mean(curves["iou"]["dynamic"])),
            "s_measure": float(structure.get_results()["sm"]),
            "weighted_f": float(weighted.get_results()["wfm"]),
            "e_measure_mean": float(e_curve.mean()),
            "e_measure_max": float(e_curve.max()),
            "mae": float(absolute.get_results()["mae"]),
        }
        for name, value in row.items():
            self.values[name].append(value)
        self.e_curves.append(e_curve)
        return row

    def best_e_threshold(self) -> int | None:
        """Index (0 = ``>= 255`` .. 255 = ``>= 0``) of the threshold where the E-measure curve
        averaged over images peaks; ``None`` before any image."""
        if not self.e_curves:
            return None
        return int(np.argmax(np.mean(np.stack(self.e_curves), axis=0)))

    def table(self) -> dict[str, list[float]]:
        """Every metric per image; ``e_measure_max`` at :meth:`best_e_threshold`."""
        table = {name: list(values) for name, values in self.values.items()}
        best = self.best_e_threshold()
        if best is not None:
            table["e_measure_max"] = [float(curve[best]) for curve in self.e_curves]
        return table
