"""The frame-level decision "polyp present" from a probability map, and its thresholds.

A frame is called positive when the largest connected region of ``prob >= pixel_threshold``
covers at least ``min_area_fraction`` of the image **and** the map's peak probability is at
least ``min_peak_probability``. The thresholds are chosen on validation images (all with a
polyp) and validation negatives (:mod:`polypseg.data.negatives`) for a target specificity
(:func:`choose_thresholds`) and stored in the checkpoint metadata under ``decision``::

    {"min_area_fraction": 0.012, "min_peak_probability": 0.93, "pixel_threshold": 0.5,
     "target_specificity": 0.95, "source": "validation", "val_sensitivity": ...,
     "val_specificity": ..., "n_val_positives": ..., "n_val_negatives": ...}

Test-time augmentation changes the probability map (the mean of four rotated predictions is
smoother and peaks lower), so a model calibrated for it also records, under ``by_tta``, the
thresholds chosen on the same frames predicted with each augmentation::

    {..., "by_tta": {"rot90": {"min_area_fraction": ..., "min_peak_probability": ...,
                               "val_sensitivity": ..., "val_specificity": ...}}}

:func:`for_tta` picks the rule of a prediction mode. Without one (:data:`DEFAULT_DECISION`):
any pixel above 0.5 in a region of at least 0.5% of the image. Only numpy and OpenCV: the
server and ``predict`` call :func:`polyp_present`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: The rule of a model whose metadata records no decision.
DEFAULT_DECISION: dict[str, Any] = {
    "min_area_fraction": 0.005,
    "min_peak_probability": 0.5,
    "pixel_threshold": 0.5,
    "source": "default",
}
#: Specificity the thresholds are chosen for, unless told otherwise.
DEFAULT_TARGET_SPECIFICITY = 0.95
#: Connected regions are found on a map of at most this many pixels a side (a strided view of
#: a larger one), so a full-size photograph costs no full-size label image.
MAX_SIDE = 512


def frame_features(prob_map: np.ndarray, pixel_threshold: float = 0.5) -> tuple[float, float]:
    """``(largest region's area fraction, peak probability)`` of one probability map.

    Args:
        prob_map: ``(H, W)`` floats in [0, 1], at any size.
        pixel_threshold: foreground where ``prob >= pixel_threshold``.
    """
    import cv2

    prob = np.asarray(prob_map)
    if prob.ndim != 2 or prob.size == 0:
        raise ValueError(f"prob_map must be a non-empty 2-D array, got shape {prob.shape}")
    peak = float(np.max(prob))
    if peak < pixel_threshold:
        return 0.0, peak
    step = max(1, math.ceil(max(prob.shape) / MAX_SIDE))
    binary = np.greater_equal(prob[::step, ::step], pixel_threshold).view(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count <= 1:
        return 0.0, peak
    largest = int(stats[1:, cv2.CC_STAT_AREA].max())
    return largest / float(binary.size), peak


#: Key of the per-test-time-augmentation thresholds in a decision (see the module docstring).
BY_TTA = "by_tta"


def for_tta(decision: Mapping[str, Any] | None, tta: str | None) -> dict[str, Any] | None:
    """The decision to apply to maps predicted with test-time augmentation ``tta``.

    ``tta`` ``None`` (or ``"none"``): ``decision`` without its ``by_tta`` map. A mode the
    decision was calibrated for: its thresholds over the plain ones, ``source`` saying so. A
    mode it was not calibrated for (a checkpoint calibrated before ``by_tta`` existed): the
    plain thresholds, ``source`` saying they were chosen without it.

    Args:
        decision: a checkpoint's ``decision`` metadata, or ``None`` (stays ``None``).
        tta: the test-time augmentation of the maps (``None``, ``"none"`` or ``"rot90"``).
    """
    if decision is None:
        return None
    plain = {k: v for k, v in decision.items() if k != BY_TTA}
    mode = None if tta in (None, "none") else str(tta)
    if mode is None:
        return plain
    by_tta = decision.get(BY_TTA)
    chosen = by_tta.get(mode) if isinstance(by_tta, Mapping) else None
    source = str(plain.get("source", "checkpoint"))
    if not isinstance(chosen, Mapping):
        return {**plain, "source": f"{source} (chosen without {mode} test-time augmentation)"}
    return {**plain, **chosen, "source": f"{source}, {mode} test-time augmentation"}


def resolve(decision: Mapping[str, Any] | None) -> dict[str, Any]:
    """``decision`` over the defaults (``None``: :data:`DEFAULT_DECISION`), without its
    ``by_tta`` map (select a mode first: :func:`for_tta`)."""
    out = dict(DEFAULT_DECISION)
    if decision:
        out.update({k: v for k, v in decision.items() if v is not None and k != BY_TTA})
    return out


def decide(area: float, peak: float, decision: Mapping[str, Any] | None = None) -> bool:
    """The decision from features already computed (:func:`frame_features`)."""
    rule = resolve(decision)
    return bool(area > 0 and area >= float(rule["min_area_fraction"])
                and peak >= float(rule["min_peak_probability"]))


def polyp_present(prob_map: np.ndarray, decision: Mapping[str, Any] | None = None) -> bool:
    """Whether the frame of ``prob_map`` shows a polyp.

    Args:
        prob_map: ``(H, W)`` float probabilities in [0, 1], at any size.
        decision: a checkpoint's ``decision`` metadata, or ``None`` for the default rule (any
            pixel above 0.5 in a region of at least 0.5% of the image).
    """
    rule = resolve(decision)
    area, peak = frame_features(prob_map, float(rule["pixel_threshold"]))
    return decide(area, peak, rule)


def rates(
    positives: Sequence[tuple[float, float]],
    negatives: Sequence[tuple[float, float]],
    decision: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Frame-level sensitivity (share of ``positives`` called present) and specificity (share
    of ``negatives`` called absent); ``None`` for an empty side."""
    pos = [decide(a, p, decision) for a, p in positives]
    neg = [decide(a, p, decision) for a, p in negatives]
    return {
        "sensitivity": float(np.mean(pos)) if pos else None,
        "specificity": 1.0 - float(np.mean(neg)) if neg else None,
        "n_positives": len(pos),
        "n_negatives": len(neg),
    }


def _candidates(values: np.ndarray, floor: float) -> np.ndarray:
    """Thresholds that separate ``values``: the floor, and just above each value over it."""
    above = np.nextafter(values[values >= floor], np.inf)
    return np.unique(np.concatenate([[floor], above]))


def choose_thresholds(
    positives: Sequence[tuple[float, float]],
    negatives: Sequence[tuple[float, float]],
    target_specificity: float = DEFAULT_TARGET_SPECIFICITY,
    pixel_threshold: float = 0.5,
) -> dict[str, Any]:
    """The ``decision`` whose specificity on ``negatives`` is at least ``target_specificity``
    and whose sensitivity on ``positives`` is highest (ties: higher specificity, then lower
    thresholds). Never more lenient than :data:`DEFAULT_DECISION`.

    Args:
        positives: ``(area fraction, peak)`` of frames with a polyp (validation images).
        negatives: the same of frames without (validation negatives); none: the default rule.
        target_specificity: in (0, 1].
        pixel_threshold: the foreground threshold the features were computed with.
    """
    if not 0 < target_specificity <= 1:
        raise ValueError(f"target specificity must be in (0, 1], got {target_specificity}")
    base = {"target_specificity": float(target_specificity), "pixel_threshold": pixel_threshold,
            "n_val_positives": len(positives), "n_val_negatives": len(negatives)}
    if not negatives or not positives:
        chosen = {**DEFAULT_DECISION, **base, "source": "default (no validation frames)"}
        return {**chosen, **_val_rates(positives, negatives, chosen)}
    pos = np.asarray(positives, dtype=np.float64).reshape(-1, 2)
    neg = np.asarray(negatives, dtype=np.float64).reshape(-1, 2)
    areas = _candidates(neg[:, 0], DEFAULT_DECISION["min_area_fraction"])
    peaks = _candidates(neg[:, 1], DEFAULT_DECISION["min_peak_probability"])

    def called(features: np.ndarray) -> np.ndarray:  # (areas, peaks, frames)
        a = features[:, 0][None, None, :]
        p = features[:, 1][None, None, :]
        return (a > 0) & (a >= areas[:, None, None]) & (p >= peaks[None, :, None])

    sensitivity = called(pos).mean(axis=2)
    specificity = 1.0 - called(neg).mean(axis=2)
    feasible = specificity >= target_specificity - 1e-12
    # lexicographic: sensitivity, specificity, then the smallest thresholds (first index);
    # thresholds above every negative make the specificity 1, so one is always feasible
    sens = np.where(feasible, sensitivity, -1.0)
    spec = np.where(sens == sens.max(), specificity, -1.0)
    i, j = np.unravel_index(int(np.flatnonzero(spec == spec.max())[0]), spec.shape)
    return {
        "min_area_fraction": float(areas[i]),
        "min_peak_probability": float(peaks[j]),
        **base,
        "source": "validation",
        "val_sensitivity": float(sensitivity[i, j]),
        "val_specificity": float(specificity[i, j]),
    }


def _val_rates(positives: Sequence[tuple[float, float]], negatives: Sequence[tuple[float, float]],
               decision: Mapping[str, Any]) -> dict[str, Any]:
    got = rates(positives, negatives, decision)
    return {"val_sensitivity": got["sensitivity"], "val_specificity": got["specificity"]}
