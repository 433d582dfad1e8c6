"""Segmenting images at their original size: preprocessing, batched inference, masks, overlays.

Each image is resized to the model's square side (stretched with ``INTER_AREA`` as in training,
or letterboxed when the model was trained with ``pad``), normalised with the model's mean/std,
run in batches, and its probability map is resized back to the image's own size before it is
thresholded, so a mask always has the input's original height and width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from polypseg.opened import OpenedModel
from polypseg.options import Tta


@dataclass(frozen=True)
class Placement:
    """Where an image of ``height x width`` sits in the model's ``side x side`` input."""

    height: int
    width: int
    top: int
    left: int
    inner_height: int
    inner_width: int


def _placement(height: int, width: int, side: int, pad: bool) -> Placement:
    if not pad:
        return Placement(height, width, 0, 0, side, side)
    scale = side / max(height, width)
    inner_h = max(1, min(side, round(height * scale)))
    inner_w = max(1, min(side, round(width * scale)))
    return Placement(height, width, (side - inner_h) // 2, (side - inner_w) // 2, inner_h, inner_w)


def preprocess(
    images: Sequence[np.ndarray], bundle: OpenedModel
) -> tuple[torch.Tensor, list[Placement]]:
    """Stack RGB ``uint8`` images into the model's normalised ``(B, 3, S, S)`` input."""
    side = bundle.size
    mean = np.asarray(bundle.mean, dtype=np.float32)
    std = np.asarray(bundle.std, dtype=np.float32)
    batch = np.zeros((len(images), side, side, 3), dtype=np.float32)
    placements = []
    for i, image in enumerate(images):
        height, width = image.shape[:2]
        place = _placement(height, width, side, bundle.pad)
        resized = cv2.resize(
            image, (place.inner_width, place.inner_height), interpolation=cv2.INTER_AREA
        )
        normalised = (resized.astype(np.float32) / 255.0 - mean) / std
        if bundle.pad:  # training pads with zeros before normalising
            batch[i] = -mean / std
        batch[i, place.top : place.top + place.inner_height,
              place.left : place.left + place.inner_width] = normalised  # fmt: skip
        placements.append(place)
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous(), placements


def predict_probabilities(
    module: torch.nn.Module, batch: torch.Tensor, tta: Tta | str | None = None
) -> torch.Tensor:
    """``(B, 1, S, S)`` foreground probabilities; ``tta="rot90"`` averages the 4 rotations.

    A thin adapter over :func:`polypseg.inference.predict_probs` (the training code's): a torch
    module gets the batch in that function's default memory format (channels-last on CPU), an
    onnxruntime module the NCHW batch it reads as it is.
    """
    from polypseg.deploy.bundle import OnnxModule
    from polypseg.inference import predict_probs

    channels_last = False if isinstance(module, OnnxModule) else None
    return predict_probs(module, batch, tta=tta, channels_last=channels_last)


def postprocess(probs: torch.Tensor, placements: Sequence[Placement]) -> list[np.ndarray]:
    """Crop each probability map to its image's area and resize it to the original size."""
    maps = probs.detach().to("cpu", torch.float32).numpy()[:, 0]
    out = []
    for prob, place in zip(maps, placements, strict=True):
        inner = prob[place.top : place.top + place.inner_height,
                     place.left : place.left + place.inner_width]  # fmt: skip
        out.append(
            cv2.resize(
                np.ascontiguousarray(inner),
                (place.width, place.height),
                interpolation=cv2.INTER_LINEAR,
            )
        )
    return out


def segment(
    bundle: OpenedModel, images: Sequence[np.ndarray], tta: Tta | str | None = None
) -> list[np.ndarray]:
    """Probability maps (``float32``, each at its image's original size) for RGB images."""
    batch, placements = preprocess(images, bundle)
    return postprocess(predict_probabilities(bundle.model, batch, tta), placements)


def to_mask(prob: np.ndarray, threshold: float) -> np.ndarray:
    """``uint8`` mask with values ``{0, 255}``: 255 where ``prob >= threshold`` (as in training's
    :func:`polypseg.inference.predict_masks`). One byte per pixel: no wider temporary."""
    mask = np.greater_equal(prob, threshold).view(np.uint8)
    mask *= 255
    return mask


def foreground_fraction(mask: np.ndarray) -> float:
    """Fraction of mask pixels that are foreground."""
    return float(np.count_nonzero(mask)) / float(mask.size) if mask.size else 0.0


def _draw_outline(out: np.ndarray, mask: np.ndarray) -> None:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thickness = max(1, round(max(mask.shape) / 300))
    cv2.drawContours(out, contours, -1, (0, 255, 0), thickness)


def overlay(image: np.ndarray, mask: np.ndarray, style: str = "outline") -> np.ndarray:
    """The RGB image with the mask drawn on it: a green ``outline``, a green ``tint``, or
    ``fill`` (the tint and its outline, as in the overlay video of ``predict``)."""
    out = image.copy()
    if style in ("tint", "fill"):
        green = np.zeros_like(out)
        green[..., 1] = 255
        blend = cv2.addWeighted(out, 0.6, green, 0.4, 0.0)
        out[mask > 0] = blend[mask > 0]
        if style == "tint":
            return out
    _draw_outline(out, mask)
    return out


#: Keys of the frame-level decision in checkpoint / export metadata (``meta["decision"]``).
DECISION_KEYS = ("min_area_fraction", "min_peak_probability")


def decision_of(meta: dict[str, Any], tta: str | None = None) -> dict[str, float] | None:
    """The frame-level decision thresholds a model's metadata records for maps predicted with
    test-time augmentation ``tta``, or ``None``.

    ``meta["decision"]`` holds ``{"min_area_fraction": float, "min_peak_probability": float}``
    when the checkpoint was calibrated, and under ``by_tta`` those of each augmentation it was
    calibrated for (:func:`polypseg.decision.for_tta` picks them; a model calibrated before
    that falls back to the plain thresholds); anything else counts as absent.

    Args:
        meta: the bundle's or checkpoint's metadata.
        tta: ``None``/``none`` or ``rot90``, as the maps were predicted.
    """
    from polypseg.decision import for_tta

    raw = meta.get("decision")
    if not isinstance(raw, dict):
        return None
    raw = for_tta(raw, tta)
    try:
        return {key: float(raw[key]) for key in DECISION_KEYS}
    except (KeyError, TypeError, ValueError):
        return None


def decision_label(meta: dict[str, Any], tta: str | None = None) -> str:
    """Which frame-level rule :func:`decision_of` gives, in words: ``calibrated``, ``calibrated
    (validation, rot90 test-time augmentation)``, ... or ``default (a region >= 0.5%)``.

    Args:
        meta: the bundle's or checkpoint's metadata.
        tta: ``None``/``none`` or ``rot90``, as the maps are predicted.
    """
    from polypseg.decision import for_tta

    if decision_of(meta, tta) is None:
        return "default (a region >= 0.5%)"
    if tta in (None, "none"):
        return "calibrated"
    return f"calibrated ({for_tta(meta['decision'], tta)['source']})"


def polyp_present(
    prob: np.ndarray, decision: dict[str, float] | None = None, threshold: float = 0.5
) -> bool:
    """Whether an image shows a polyp: the frame-level decision of ``predict`` and ``serve``,
    the rule of :func:`polypseg.decision.polyp_present` (its one owner, also what ``evaluate``
    scores and training calibrates).

    With ``decision`` (see :func:`decision_of`): the largest foreground region
    (``prob >= threshold``, 8-connected) covers at least ``min_area_fraction`` of the image and
    the highest probability is at least ``min_peak_probability``. Without: a foreground region
    of at least :data:`polypseg.decision.DEFAULT_DECISION`'s 0.5% of the image.

    Args:
        prob: ``(H, W)`` ``float32`` probability map.
        decision: calibrated thresholds, or ``None``.
        threshold: the probability threshold of the mask.
    """
    from polypseg.decision import DEFAULT_DECISION
    from polypseg.decision import polyp_present as decide

    if prob.size == 0:
        return False
    rule = dict(decision) if decision is not None else {
        "min_area_fraction": DEFAULT_DECISION["min_area_fraction"],
        "min_peak_probability": threshold,
    }
    return decide(prob, {**rule, "pixel_threshold": threshold})


def mask_geometry(mask: np.ndarray, tolerance: float = 0.01) -> dict[str, Any]:
    """Bounding boxes, pixel areas and simplified outer polygons of a mask's regions.

    A region is an 8-connected component of the mask's foreground
    (``cv2.connectedComponentsWithStats``), an island inside another's hole included. Its
    polygon is its ``cv2.findContours`` outline simplified by ``cv2.approxPolyDP`` with an
    epsilon of ``tolerance`` times the outline's perimeter (at least one pixel). Regions are
    ordered by area, largest first.

    Args:
        mask: ``(H, W)`` ``uint8``, foreground where non-zero.

    Returns:
        ``{"boxes": [{"x", "y", "width", "height"}], "contours": [[[x, y], ...]],
        "areas": [pixels]}``, one entry per region in each list.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (mask > 0).view(np.uint8), connectivity=8
    )
    regions = []
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        inside = (labels[y : y + h, x : x + w] == label).view(np.uint8)
        contours, _ = cv2.findContours(
            inside, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x, y)
        )
        contour = max(contours, key=len)
        epsilon = max(1.0, tolerance * cv2.arcLength(contour, closed=True))
        polygon = cv2.approxPolyDP(contour, epsilon, closed=True)[:, 0, :]
        regions.append(
            {
                "box": {"x": x, "y": y, "width": w, "height": h},
                "area": float(area),
                "polygon": polygon.astype(int).tolist(),
            }
        )
    regions.sort(key=lambda region: -region["area"])
    return {
        "boxes": [region["box"] for region in regions],
        "contours": [region["polygon"] for region in regions],
        "areas": [region["area"] for region in regions],
    }
