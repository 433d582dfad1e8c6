"""The gallery of one model: where it breaks under rotation, and where it segments worst.

Both rows are computed now, by running the run's best checkpoint on the named test images at
its input size (resized and normalised as in evaluation), with the view's test-time
augmentation, exactly as ``polypseg sweep`` and ``polypseg evaluate`` did:

* least consistent: the swept test images with the lowest consistency at any angle other than
  0 (``sweep_images.csv``), each shown as the input, the prediction at 0 degrees, the
  prediction on the input rotated by that angle rotated back by the opposite angle, and their
  difference (magenta: only at 0 degrees, cyan: only rotated; grey: both), inside the inscribed
  disc. The caption's consistency is recomputed here in the sweep's own way
  (``Dice(rot_a(pred(x)), pred(rot_a(x)))`` in the disc, in the rotated frame).
* lowest Dice: the test images with the lowest Dice in the evaluation (``test*.json``), shown as
  the input, the ground truth and the prediction, each tinted on the input.

Tiles are PNG bytes (:func:`polypseg.deploy.imageio.encode_png`) at the model's input size.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from polypseg.checkpoint import InputSpec
from polypseg.errors import PolypsegError, RunError
from polypseg.report.inputs import ModelView, read_json

#: Colours of the difference map (RGB): only at 0 degrees, only rotated, both.
ONLY_ZERO = (230, 40, 200)
ONLY_ROTATED = (40, 200, 230)
BOTH = (150, 150, 150)


@dataclass
class Tile:
    """One picture of the gallery: PNG bytes and a caption."""

    caption: str
    png: bytes


@dataclass
class GalleryRow:
    """One test image: its name, what was measured, and its tiles."""

    stem: str
    note: str
    tiles: list[Tile]
    score: float
    """Consistency recomputed now, or the evaluation's Dice."""
    angle: float | None = None


@dataclass
class Gallery:
    """The two rows of pictures of one model, and why a part is missing if it is."""

    view: ModelView
    consistency: list[GalleryRow] = field(default_factory=list)
    lowest_dice: list[GalleryRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    """What loading the model gave: ``params``, ``macs_256``, ``size``, ``variant``."""


def least_consistent(images_csv: Path, run_name: str | None, count: int) -> list[tuple[str, float,
                                                                                      float]]:
    """``(stem, angle, consistency)`` of the ``count`` swept images with the lowest consistency
    at an angle other than 0 (each image at its worst angle; ties by stem)."""
    worst: dict[str, tuple[float, float]] = {}
    with open(images_csv, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if run_name is not None and row.get("run") != run_name:
                continue
            angle, value = float(row["angle"]), float(row["consistency"])
            if math.isclose(angle % 360, 0.0, abs_tol=1e-9) or not math.isfinite(value):
                continue
            if row["stem"] not in worst or value < worst[row["stem"]][1]:
                worst[row["stem"]] = (angle, value)
    ranked = sorted(worst.items(), key=lambda kv: (kv[1][1], kv[0]))
    return [(stem, angle, value) for stem, (angle, value) in ranked[:count]]


def lowest_dice(eval_file: Path, count: int) -> list[tuple[str, float]]:
    """``(stem, dice)`` of the ``count`` test images with the lowest Dice (ties by stem)."""
    rows = read_json(eval_file).get("images") or []
    scored = [(str(r["stem"]), float(r["dice"])) for r in rows
              if r.get("dice") is not None and math.isfinite(float(r["dice"]))]
    return sorted(scored, key=lambda item: (item[1], item[0]))[:count]


def _display(image: Any, spec: InputSpec) -> np.ndarray:
    """The normalised ``(3, S, S)`` tensor back to an ``(S, S, 3)`` uint8 RGB picture."""
    mean = np.asarray(spec.mean, np.float32)[:, None, None]
    std = np.asarray(spec.std, np.float32)[:, None, None]
    rgb = image.numpy() * std + mean
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)


def _outside_disc(rgb: np.ndarray, disc: np.ndarray) -> np.ndarray:
    """``rgb`` with the pixels outside the inscribed disc dimmed to a third."""
    out = rgb.copy()
    out[~disc] = out[~disc] // 3
    return out


def _tint(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from polypseg.deploy.predict import overlay

    return overlay(rgb, mask.astype(np.uint8) * 255, style="tint")


def _difference(at_zero: np.ndarray, rotated: np.ndarray, disc: np.ndarray) -> np.ndarray:
    out = np.zeros((*at_zero.shape, 3), np.uint8)
    out[at_zero & rotated] = BOTH
    out[at_zero & ~rotated] = ONLY_ZERO
    out[~at_zero & rotated] = ONLY_ROTATED
    out[~disc] = (40, 40, 40)
    return out


class _Model:
    """A run's model and its test images by stem, ready to predict."""

    def __init__(self, view: ModelView, device: str) -> None:
        from polypseg.data import discover
        from polypseg.opened import open_run

        if view.run_dir is None:
            raise RunError(f"{view.label}: its run folder was not found")
        if view.data_dir is None:
            raise RunError(f"{view.label}: its dataset folder was not found (pass --data)")
        self.view = view
        self.run = open_run(view.run_dir, "best", device)
        self.pairs = {p.stem: p for p in discover(view.data_dir).pairs}

    def items(self, stems: list[str]) -> list[dict[str, Any]]:
        from polypseg.training.datasets import eval_dataset

        missing = [s for s in stems if s not in self.pairs]
        if missing:
            raise RunError(f"{self.view.label}: image {missing[0]} is not in "
                           f"{self.view.data_dir}")
        dataset = eval_dataset([self.pairs[s] for s in stems], self.run.size, self.run.depth)
        return [dataset[i] for i in range(len(stems))]

    def probs(self, images: Any) -> Any:
        from polypseg.inference import predict_probs

        return predict_probs(self.run.model, images, tta=self.view.tta)


def _consistency_rows(model: _Model, picks: list[tuple[str, float, float]]) -> list[GalleryRow]:
    from polypseg.geometry import disc_mask, rotate
    from polypseg.metrics import binarize, dice

    threshold = model.run.threshold
    disc_t = disc_mask(model.run.size)
    disc = disc_t.numpy()
    rows = []
    for item, (stem, angle, recorded) in zip(model.items([p[0] for p in picks]), picks,
                                             strict=True):
        x = item["image"][None]
        probs0 = model.probs(x)
        probs_rot = model.probs(rotate(x, angle))
        consistency = float(dice(binarize(rotate(probs0, angle), threshold) * disc_t,
                                 binarize(probs_rot, threshold) * disc_t)[0])
        at_zero = (probs0[0, 0] >= threshold).numpy() & disc
        back = (rotate(probs_rot, -angle)[0, 0] >= threshold).numpy() & disc
        rgb = _outside_disc(_display(item["image"], model.run.input), disc)
        turn = f"{angle:g}°"
        rows.append(GalleryRow(
            stem=stem, score=consistency, angle=angle,
            note=f"consistency {consistency:.3f} at {turn} (sweep: {recorded:.3f})",
            tiles=[
                Tile("input", _png(rgb)),
                Tile("prediction at 0°", _png(_tint(rgb, at_zero))),
                Tile(f"prediction on input rotated {turn}, rotated back", _png(_tint(rgb, back))),
                Tile("difference", _png(_difference(at_zero, back, disc))),
            ],
        ))
    return rows


def _dice_rows(model: _Model, picks: list[tuple[str, float]]) -> list[GalleryRow]:
    threshold = model.run.threshold
    rows = []
    for item, (stem, value) in zip(model.items([p[0] for p in picks]), picks, strict=True):
        rgb = _display(item["image"], model.run.input)
        truth = item["mask"][0].numpy() > 0.5
        pred = (model.probs(item["image"][None])[0, 0] >= threshold).numpy()
        rows.append(GalleryRow(
            stem=stem, note=f"Dice {value:.3f}", score=value,
            tiles=[Tile("input", _png(rgb)), Tile("ground truth", _png(_tint(rgb, truth))),
                   Tile("prediction", _png(_tint(rgb, pred)))],
        ))
    return rows


def _png(rgb: np.ndarray) -> bytes:
    from polypseg.deploy.imageio import encode_png

    return encode_png(np.ascontiguousarray(rgb))


def model_facts(model: Any) -> dict[str, Any]:
    """Parameters and MACs per 256 x 256 image of a loaded run (``zoo.describe``)."""
    import zoo

    info = zoo.describe(model.run.model, (256, 256))
    return {"params": int(info["params"]), "macs_256": int(info["macs"]),
            "size": model.run.size, "variant": model.run.variant}


def build_gallery(view: ModelView, count: int = 3, device: str = "cpu") -> Gallery:
    """The gallery of ``view`` (``count`` images per row kind); what cannot be shown (no run
    folder, no dataset, no sweep or evaluation file, an image gone) becomes a note, not an
    error."""
    gallery = Gallery(view)
    try:
        model = _Model(view, device)
        gallery.facts = model_facts(model)
    except PolypsegError as err:
        gallery.notes.append(str(err))
        return gallery
    if count <= 0:
        return gallery
    try:
        if view.images_csv is None:
            gallery.notes.append("no per-image sweep scores (sweep_images.csv): run "
                                 "polypseg sweep")
        elif picks := least_consistent(view.images_csv, view.sweep_name, count):
            gallery.consistency = _consistency_rows(model, picks)
        else:
            gallery.notes.append("the sweep has no angle other than 0")
        if view.eval_file is None:
            gallery.notes.append("no test evaluation (eval/test.json): run polypseg evaluate")
        else:
            gallery.lowest_dice = _dice_rows(model, lowest_dice(view.eval_file, count))
    except PolypsegError as err:
        gallery.notes.append(str(err))
    return gallery


# -- the same images across models ------------------------------------------------------------
#: A prediction covering less than this share of the scored pixels counts as empty: an image
#: whose predictions are empty at both angles says nothing about consistency.
EMPTY_SHARE = 0.005


@dataclass
class CompareRow:
    """One test image shown for every model: input (and truth), then a tile per model."""

    stem: str
    note: str
    tiles: list[Tile]


@dataclass
class Comparison:
    """The models of one dataset on the same test images, three ways."""

    dataset: str
    models: list[str]
    disagree: list[CompareRow] = field(default_factory=list)
    """Where the models' test Dice differs most (max minus min)."""
    best_worst: list[CompareRow] = field(default_factory=list)
    """Where the best model (highest mean test Dice) scores lowest."""
    best: str | None = None
    consistency: list[CompareRow] = field(default_factory=list)
    """Where the models are least consistent under rotation (mean over models)."""
    notes: list[str] = field(default_factory=list)


def _eval_scores(view: ModelView) -> dict[str, tuple[float, float]]:
    """``stem -> (dice, predicted share)`` of a view's test evaluation (empty without one)."""
    if view.eval_file is None:
        return {}
    out = {}
    for row in read_json(view.eval_file).get("images") or []:
        value = row.get("dice")
        if value is not None and math.isfinite(float(value)):
            out[str(row["stem"])] = (float(value), float(row.get("pred_fraction", 1.0)))
    return out


def _worst_angles(view: ModelView) -> dict[str, dict[float, float]]:
    """``stem -> {angle: consistency}`` of a view's swept images (angles other than 0)."""
    if view.images_csv is None:
        return {}
    out: dict[str, dict[float, float]] = {}
    with open(view.images_csv, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if view.sweep_name is not None and row.get("run") != view.sweep_name:
                continue
            angle, value = float(row["angle"]), float(row["consistency"])
            if math.isclose(angle % 360, 0.0, abs_tol=1e-9) or not math.isfinite(value):
                continue
            out.setdefault(row["stem"], {})[angle] = value
    return out


def _pick_disagree(scores: dict[str, dict[str, tuple[float, float]]], count: int
                   ) -> list[tuple[str, float]]:
    """``(stem, spread)`` of the images whose test Dice differs most across the models."""
    stems = set.intersection(*(set(s) for s in scores.values())) if scores else set()
    spread = {s: max(v[s][0] for v in scores.values()) - min(v[s][0] for v in scores.values())
              for s in stems}
    return sorted(spread.items(), key=lambda kv: (-kv[1], kv[0]))[:count]


def _pick_inconsistent(angles: dict[str, dict[str, dict[float, float]]],
                       scores: dict[str, dict[str, tuple[float, float]]], count: int
                       ) -> list[tuple[str, float, float]]:
    """``(stem, angle, mean consistency)``: the images with the lowest consistency averaged
    over the models at the angle where that mean is lowest. A model whose prediction of the
    image is empty (test evaluation) is left out of its mean; an image no model predicts is
    not picked."""
    stems = set.intersection(*(set(a) for a in angles.values())) if angles else set()
    ranked = []
    for stem in stems:
        counted = [name for name in angles
                   if scores.get(name, {}).get(stem, (0.0, 1.0))[1] >= EMPTY_SHARE]
        if not counted:
            continue
        common = set.intersection(*(set(angles[n][stem]) for n in counted))
        if not common:
            continue
        means = {a: sum(angles[n][stem][a] for n in counted) / len(counted) for a in common}
        angle = min(means, key=lambda a: (means[a], a))
        ranked.append((stem, angle, means[angle]))
    return sorted(ranked, key=lambda r: (r[2], r[0]))[:count]


def _compare_dice_row(models: dict[str, _Model], stem: str, note: str,
                      scores: dict[str, dict[str, tuple[float, float]]]) -> CompareRow:
    first = next(iter(models.values()))
    item = first.items([stem])[0]
    rgb = _display(item["image"], first.run.input)
    truth = item["mask"][0].numpy() > 0.5
    tiles = [Tile("input", _png(rgb)), Tile("ground truth", _png(_tint(rgb, truth)))]
    for name, model in models.items():
        own = model.items([stem])[0]
        pred = (model.probs(own["image"][None])[0, 0] >= model.run.threshold).numpy()
        value = scores.get(name, {}).get(stem, (math.nan, 0.0))[0]
        tiles.append(Tile(f"{name}|Dice {value:.3f}", _png(_tint(rgb, pred))))
    return CompareRow(stem=stem, note=note, tiles=tiles)


def _compare_consistency_row(models: dict[str, _Model], stem: str, angle: float,
                             mean: float) -> CompareRow:
    from polypseg.geometry import disc_mask, rotate
    from polypseg.metrics import binarize, dice

    first = next(iter(models.values()))
    item = first.items([stem])[0]
    disc_t = disc_mask(first.run.size)
    rgb = _outside_disc(_display(item["image"], first.run.input), disc_t.numpy())
    tiles = [Tile("input", _png(rgb))]
    turn = f"{angle:g}°"
    for name, model in models.items():
        disc_m = disc_mask(model.run.size)
        x = model.items([stem])[0]["image"][None]
        probs0, probs_rot = model.probs(x), model.probs(rotate(x, angle))
        threshold = model.run.threshold
        value = float(dice(binarize(rotate(probs0, angle), threshold) * disc_m,
                           binarize(probs_rot, threshold) * disc_m)[0])
        at_zero = (probs0[0, 0] >= threshold).numpy() & disc_m.numpy()
        back = (rotate(probs_rot, -angle)[0, 0] >= threshold).numpy() & disc_m.numpy()
        share = disc_m.numpy().sum()
        empty = at_zero.sum() < EMPTY_SHARE * share and back.sum() < EMPTY_SHARE * share
        tiles.append(Tile(f"{name}|" + ("empty at both" if empty else f"{value:.3f}"),
                          _png(_difference(at_zero, back, disc_m.numpy()))))
    return CompareRow(stem=stem, tiles=tiles,
                      note=f"turned {turn}; mean consistency over the models {mean:.3f} "
                           "(sweep)")


def _best_model(views: list[ModelView], scores: dict[str, dict[str, tuple[float, float]]],
                stalled: set[str]) -> str | None:
    """The model with the highest mean test Dice over its evaluated images, among those
    without a stalled seed."""
    means = {v.label: sum(d for d, _ in scores[v.label].values()) / len(scores[v.label])
             for v in views if scores.get(v.label) and v.label not in stalled}
    return max(means, key=lambda k: means[k]) if means else None


def build_comparison(views: list[ModelView], count: int = 3, device: str = "cpu",
                     stalled: set[str] | None = None) -> Comparison:
    """The models of one dataset (``views``) side by side on the same test images.

    Three kinds of row, ``count`` images each: where the models' test Dice differs most,
    where the best model (highest mean test Dice, no stalled seed) scores lowest, and where
    the models are least consistent under rotation (images predicted empty left out). Tiles
    are computed now from each model's best checkpoint, as in :func:`build_gallery`. What
    cannot be shown becomes a note.

    Args:
        views: the models, all of one dataset.
        count: images per kind of row (0: none).
        device: where the predictions run.
        stalled: labels of models with a stalled seed (never the best).
    """
    comparison = Comparison(dataset=views[0].dataset if views else "", models=[])
    models: dict[str, _Model] = {}
    for view in views:
        try:
            models[view.label] = _Model(view, device)
        except PolypsegError as err:
            comparison.notes.append(str(err))
    comparison.models = list(models)
    if count <= 0 or not models:
        return comparison
    shown = [v for v in views if v.label in models]
    scores = {v.label: s for v in shown if (s := _eval_scores(v))}
    angles = {v.label: a for v in shown if (a := _worst_angles(v))}
    try:
        if scores:
            for stem, spread in _pick_disagree(scores, count):
                comparison.disagree.append(_compare_dice_row(
                    models, stem, f"test Dice spread {spread:.3f} (max - min)", scores))
            comparison.best = _best_model(shown, scores, stalled or set())
            if comparison.best is not None:
                own = scores[comparison.best]
                for stem in sorted(own, key=lambda s: (own[s][0], s))[:count]:
                    comparison.best_worst.append(_compare_dice_row(
                        models, stem, f"{comparison.best}: Dice {own[stem][0]:.3f}", scores))
        else:
            comparison.notes.append("no test evaluation (eval/test.json): run polypseg "
                                    "evaluate")
        if angles:
            for stem, angle, mean in _pick_inconsistent(angles, scores, count):
                comparison.consistency.append(
                    _compare_consistency_row(models, stem, angle, mean))
        else:
            comparison.notes.append("no per-image sweep scores (sweep_images.csv): run "
                                    "polypseg sweep")
    except PolypsegError as err:
        comparison.notes.append(str(err))
    return comparison
