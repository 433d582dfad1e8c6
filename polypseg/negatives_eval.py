"""How a model answers "nothing here": false-positive rate on negatives and the frame decision.

Evaluation negatives are made from the evaluated images themselves (:func:`polypseg.data.
negatives.fixed_negatives`: one crop clear of the mask per image, its box a function of a
fixed seed and the image's stem, recorded in the result). On them this module reports

* the **false-positive rate**: the share of negatives whose predicted foreground
  (``prob >= threshold``) covers more than :data:`FP_AREA` of the image, and the mean
  predicted foreground fraction;
* the **frame-level** sensitivity (share of the images, all with a polyp, called "polyp
  present") and specificity (share of the negatives called absent) under the checkpoint's
  ``decision`` (:mod:`polypseg.decision`; the default rule when it records none).

:func:`calibrate` chooses a checkpoint's decision thresholds on the validation images and
validation negatives; :func:`calibrate_checkpoint` writes them into its metadata.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from polypseg.decision import (
    BY_TTA,
    DEFAULT_TARGET_SPECIFICITY,
    choose_thresholds,
    decide,
    for_tta,
    frame_features,
    rates,
    resolve,
)

#: A negative counts as a false positive when its predicted foreground exceeds this fraction.
FP_AREA = 0.005
#: What a decision's ``by_tta`` map keeps of each mode's chosen rule.
TTA_KEYS = ("min_area_fraction", "min_peak_probability", "val_sensitivity", "val_specificity")


def features_of(probs: Any, pixel_threshold: float = 0.5) -> list[tuple[float, float]]:
    """``(largest region fraction, peak)`` of each map of a ``(B, 1, H, W)`` probability
    tensor (or array)."""
    maps = np.asarray(probs.detach().cpu() if hasattr(probs, "detach") else probs)
    return [frame_features(m[0], pixel_threshold) for m in maps]


def predict_negatives(
    model: Any,
    negatives: Sequence[Any],
    size: int,
    depth: int | None,
    threshold: float,
    tta: str | None = None,
    batch_size: int = 8,
) -> list[dict[str, Any]]:
    """One row per negative: ``stem``, ``box`` ``[x0, y0, x1, y1]``, ``pred_fraction``,
    ``largest_fraction``, ``peak``.

    Args:
        model: in eval mode on its device.
        negatives: :class:`~polypseg.data.negatives.FixedNegative` items.
        size: the model's input side.
        depth: its U-Net depth (checked against ``size``); ``None``: unchecked.
        threshold: the foreground probability threshold.
        tta: ``None`` or ``rot90``.
        batch_size: negatives per forward pass.
    """
    import torch

    from polypseg.data import build_transforms
    from polypseg.data.negatives import FixedNegativeDataset
    from polypseg.inference import predict_probs

    if not negatives:
        return []
    dataset = FixedNegativeDataset(negatives, build_transforms(size, train=False, depth=depth))
    rows: list[dict[str, Any]] = []
    position = 0
    for batch in torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False):
        probs = predict_probs(model, batch["image"], tta=tta)
        fractions = (probs >= threshold).float().mean(dim=(1, 2, 3)).tolist()
        for fraction, (area, peak) in zip(fractions, features_of(probs, threshold), strict=True):
            negative = negatives[position]
            rows.append({"stem": negative.stem, "box": negative.box.as_list(),
                         "pred_fraction": float(fraction), "largest_fraction": area,
                         "peak": peak})
            position += 1
    return rows


def summarize(
    positive_features: Sequence[tuple[float, float]],
    negative_rows: Sequence[Mapping[str, Any]],
    skipped: Sequence[str],
    decision: Mapping[str, Any] | None,
    seed: int,
    stems: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The ``negatives`` and ``frame_level`` sections of an evaluation result (``stems``: of
    the positives, for the per-image decisions ``frame_level.present``).

    Args:
        positive_features: ``(largest_fraction, peak)`` of each evaluated (positive) image's
            prediction.
        negative_rows: :func:`predict_negatives`'s rows.
        skipped: stems of the images that gave no negative crop.
        decision: the checkpoint's decision thresholds; ``None``:
            :data:`polypseg.decision.DEFAULT_DECISION`.
        seed: the seed the negatives were cut with, recorded.
        stems: the stems of ``positive_features``; ``None``: no per-image decisions.
    """
    rule = resolve(decision)
    rows = [{**row, "polyp_present": decide(row["largest_fraction"], row["peak"], rule)}
            for row in negative_rows]
    fractions = [row["pred_fraction"] for row in rows]
    negatives = {
        "how": "one square crop per evaluated image, clear of its mask (polypseg.data.negatives)",
        "seed": seed,
        "fp_area": FP_AREA,
        "n": len(rows),
        "n_skipped": len(skipped),
        "skipped": list(skipped),
        "false_positive_rate": (float(np.mean([f > FP_AREA for f in fractions]))
                                if fractions else None),
        "mean_pred_fraction": float(np.mean(fractions)) if fractions else None,
        "images": rows,
    }
    got = rates(positive_features, [(r["largest_fraction"], r["peak"]) for r in rows], rule)
    frame = {**got, "decision": rule}
    if stems is not None:
        frame["present"] = {stem: decide(a, p, rule)
                            for stem, (a, p) in zip(stems, positive_features, strict=True)}
    return {"negatives": negatives, "frame_level": frame}


def evaluate_negatives(
    loaded: Any,
    pairs: Sequence[Any],
    positive_features: Sequence[tuple[float, float]],
    tta: str | None = None,
    batch_size: int = 8,
    stems: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The ``negatives`` and ``frame_level`` sections for a loaded run evaluated on ``pairs``.

    Args:
        loaded: the :class:`~polypseg.opened.OpenedModel` of a run.
        pairs: the evaluated images (the negatives are cut from them).
        positive_features: :func:`features_of` of the evaluated images' predictions.
        tta: ``None`` or ``rot90``, as the images were evaluated.
        batch_size: negatives per forward pass.
        stems: the stems of ``positive_features``, to record each image's decision.
    """
    from polypseg.data.negatives import EVAL_SEED, fixed_negatives

    negatives, skipped = fixed_negatives(pairs, EVAL_SEED)
    rows = predict_negatives(loaded.model, negatives, loaded.size, loaded.depth,
                             loaded.threshold, tta, batch_size)
    decision = for_tta(loaded.checkpoint.decision, tta)
    return summarize(positive_features, rows, skipped, decision, EVAL_SEED, stems)


def format_lines(result: Mapping[str, Any]) -> list[str]:
    """Terminal lines of the ``negatives`` / ``frame_level`` sections (none if absent)."""
    negatives, frame = result.get("negatives"), result.get("frame_level")
    if not negatives or not frame:
        return []
    lines = []
    if negatives["n"]:
        lines.append(
            f"  negatives {negatives['n']} (crops of these images without polyp): false-positive "
            f"rate {negatives['false_positive_rate']:.3f} (> {FP_AREA:.1%} foreground), "
            f"mean foreground {negatives['mean_pred_fraction']:.4f}"
        )
    sens, spec = frame["sensitivity"], frame["specificity"]
    source = frame["decision"].get("source", "checkpoint")
    lines.append(
        "  frame-level 'polyp present' (" + source + " thresholds): sensitivity "
        + ("n/a" if sens is None else f"{sens:.3f}") + ", specificity "
        + ("n/a" if spec is None else f"{spec:.3f}")
    )
    return lines


def calibrate(
    model: Any,
    pairs: Sequence[Any],
    size: int,
    depth: int | None,
    threshold: float = 0.5,
    target_specificity: float = DEFAULT_TARGET_SPECIFICITY,
    batch_size: int = 8,
) -> dict[str, Any]:
    """The decision thresholds of ``model`` chosen on ``pairs`` (validation images) and their
    fixed negatives for ``target_specificity`` (:func:`polypseg.decision.choose_thresholds`),
    and under ``by_tta`` the thresholds chosen the same way on maps predicted with each
    test-time augmentation (:func:`polypseg.decision.for_tta` picks them).

    Args:
        model: in eval mode on its device.
        pairs: the validation image/mask pairs; their fixed negatives are cut from them.
        size: the model's input side.
        depth: its U-Net depth (checked against ``size``); ``None``: unchecked.
        threshold: the foreground probability threshold.
        target_specificity: the frame-level specificity to reach on the negatives.
        batch_size: images per forward pass.
    """
    from polypseg.data.negatives import EVAL_SEED, fixed_negatives
    from polypseg.options import Tta

    negatives, _ = fixed_negatives(pairs, EVAL_SEED)
    by_mode = {}
    for tta in [None, *(mode for mode in Tta if mode is not Tta.NONE)]:
        positives = _positive_features(model, pairs, size, depth, threshold, tta, batch_size)
        rows = predict_negatives(model, negatives, size, depth, threshold, tta, batch_size)
        by_mode[tta] = choose_thresholds(
            positives, [(r["largest_fraction"], r["peak"]) for r in rows], target_specificity,
            threshold)
    chosen = by_mode.pop(None)
    by_tta = {str(mode): {key: rule[key] for key in TTA_KEYS if key in rule}
              for mode, rule in by_mode.items()}
    return {**chosen, "negatives_seed": EVAL_SEED, BY_TTA: by_tta}


def _positive_features(
    model: Any, pairs: Sequence[Any], size: int, depth: int | None, threshold: float,
    tta: str | None, batch_size: int,
) -> list[tuple[float, float]]:
    """:func:`features_of` the predictions of ``pairs``' images (evaluation resize, ``tta``)."""
    import torch

    from polypseg.inference import predict_probs
    from polypseg.training.datasets import eval_dataset

    features: list[tuple[float, float]] = []
    for batch in torch.utils.data.DataLoader(eval_dataset(pairs, size, depth),
                                             batch_size=batch_size, shuffle=False):
        features.extend(features_of(predict_probs(model, batch["image"], tta=tta), threshold))
    return features


def calibrate_checkpoint(
    stem: str | Path,
    pairs: Sequence[Any],
    target_specificity: float = DEFAULT_TARGET_SPECIFICITY,
    device: str = "cpu",
) -> dict[str, Any]:
    """Choose the decision of checkpoint ``stem`` on ``pairs`` (its validation images) and
    write it into the checkpoint's metadata (the weights are untouched); return it.

    Args:
        stem: the checkpoint stem (``RUN/checkpoints/best``).
        pairs: its validation image/mask pairs.
        target_specificity: the frame-level specificity to reach on the negatives.
        device: where the model runs.
    """
    from polypseg.checkpoint import write_meta
    from polypseg.opened import open_run

    opened = open_run(stem, device=device)
    spec = opened.input
    decision = calibrate(opened.model, pairs, spec.size, spec.depth, spec.threshold,
                         target_specificity)
    write_meta(stem, replace(opened.checkpoint, decision=decision))
    return decision
