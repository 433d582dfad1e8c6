"""The numbers of a report: one summary row per model, and the bench's comparisons.

A row holds, per metric, ``{"mean", "std", "n"}`` and what the spread is over: for a bench
quality result the seeds of an entry (``mean_std`` of the per-run test means, as the bench's
own tables), for a run folder the test images of its evaluation. Columns:

* Dice, IoU, HD95: test-set means over images (``evaluate_run``);
* consistency off-90: ``Dice(rot pred(x), pred(rot x))`` averaged over the swept angles that are
  not multiples of 90 degrees (``polypseg.bench.collect.sweep_summary``);
* accuracy drop: the sweep's accuracy ``Dice(pred(rot x), rot y)`` at 0 degrees minus its mean
  over the other swept angles, on the same images: what turning the image costs (positive:
  worse when turned);
* parameters, MACs per 256 x 256 image, training time (wall seconds of the run).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from polypseg.report.inputs import ModelView, QualityResult, read_json, resolve_recorded

Stat = dict[str, Any]

#: The test metrics of a summary row: thresholded, then the field's suite (at mask size).
TEST_METRICS: tuple[str, ...] = ("dice", "iou", "hd95", "mdice", "miou", "s_measure",
                                 "weighted_f", "e_measure_mean", "e_measure_max", "mae")
#: How a model answers "nothing here" (:mod:`polypseg.negatives_eval`): the false-positive rate
#: on the test negatives and the frame-level "polyp present" sensitivity and specificity.
NEGATIVE_METRICS: tuple[str, ...] = ("false_positive_rate", "frame_sensitivity",
                                     "frame_specificity")


def stat(values: list[float | None]) -> Stat:
    """``{"mean", "std", "n"}`` of the finite values (sample std; ``None`` below two)."""
    from polypseg.bench.report import mean_std

    mean, std, n = mean_std(v for v in values if v is not None)
    return {"mean": None if n == 0 else mean, "std": std, "n": n}


def sweep_run(sweep: dict[str, Any], name: str | None) -> dict[str, Any] | None:
    """The entry of run ``name`` in a sweep document (its only run when ``name`` is None)."""
    runs = sweep.get("runs") or []
    if name is None:
        return runs[0] if len(runs) == 1 else None
    return next((r for r in runs if r.get("name") == name), None)


def _upright(angle: float) -> bool:
    return math.isclose(angle % 360, 0.0, abs_tol=1e-9) or math.isclose(angle % 360, 360.0,
                                                                         abs_tol=1e-9)


def accuracy_drop(run: dict[str, Any]) -> float | None:
    """Sweep accuracy at 0 degrees minus its mean over the other swept angles (None without
    both); the bench's own ``sweep_summary`` gives the same where it records the drop."""
    upright, turned = [], []
    for per in run.get("per_angle", []):
        value = per["accuracy"]["mean"]
        if value is not None:
            (upright if _upright(per["angle"]) else turned).append(value)
    if not upright or not turned:
        return None
    return upright[0] - sum(turned) / len(turned)


def accuracy_drop_of_summary(sweep: dict[str, Any], angles: list[float]) -> float | None:
    """:func:`accuracy_drop` from a bench row's sweep summary, for results whose sweep files
    are not at hand: needs ``accuracy_0`` (accuracy at 0 degrees) and ``accuracy_mean`` (over
    all ``angles``, 0 among them); None otherwise."""
    at_zero, mean = sweep.get("accuracy_0"), sweep.get("accuracy_mean")
    if at_zero is None or mean is None or len(angles) < 2 or not any(map(_upright, angles)):
        return None
    return at_zero - (mean * len(angles) - at_zero) / (len(angles) - 1)


def sweep_numbers(sweep_file: Path | None, name: str | None) -> dict[str, float | None]:
    """``consistency_off90`` and ``accuracy_drop`` of one run of a sweep file."""
    from polypseg.bench.collect import sweep_summary

    empty: dict[str, float | None] = {"consistency_off90": None, "accuracy_drop": None}
    if sweep_file is None or not sweep_file.is_file():
        return empty
    run = sweep_run(read_json(sweep_file), name)
    if run is None:
        return empty
    summary = sweep_summary({"runs": [run]})
    drop = summary.get("accuracy_drop")
    return {"consistency_off90": summary.get("consistency_off90"),
            "accuracy_drop": accuracy_drop(run) if drop is None else drop}


def _train_seconds(run_dir: Path | None) -> float | None:
    """Sum of ``epoch_seconds`` of ``RUN/metrics.csv`` (None without one)."""
    if run_dir is None:
        return None
    from polypseg.training.logs import training_seconds

    return training_seconds(run_dir)


def run_row(view: ModelView, facts: dict[str, Any]) -> dict[str, Any]:
    """The summary row of a model given as a run folder or sweep: spread over test images.

    ``facts`` holds what loading the model gave (``params``, ``macs_256``), possibly empty.
    """
    metrics: dict[str, Stat] = {}
    n_images = None
    if view.eval_file is not None:
        evaluated = read_json(view.eval_file)
        n_images = evaluated.get("n_images")
        for key in TEST_METRICS:
            summary = (evaluated.get("summary") or {}).get(key) or {}
            metrics[key] = {"mean": summary.get("mean"), "std": summary.get("std"),
                            "n": summary.get("n", 0)}
        metrics.update(_negative_stats(evaluated))
    sweep = sweep_numbers(view.sweep_file, view.sweep_name)
    for key, value in sweep.items():
        metrics[key] = {"mean": value, "std": None, "n": 0 if value is None else 1}
    return {
        "dataset": view.dataset, "label": view.label, "params": facts.get("params"),
        "macs_256": facts.get("macs_256"), "train_seconds": _train_seconds(view.run_dir),
        "metrics": metrics, "spread": "images", "n": n_images, "stalled": 0,
    }


def quality_rows(result: QualityResult) -> list[dict[str, Any]]:
    """Summary rows of a bench result: per dataset and entry, mean +- std over seeds."""
    doc = result.doc
    entries = {e["name"]: e for e in doc.get("entries", [])}
    labels = {k: v.get("label", k) for k, v in (doc.get("datasets") or {}).items()}
    drops: dict[tuple[str, str], list[float | None]] = {}
    stalled: dict[tuple[str, str], int] = {}
    angles = _angles(doc)
    for row in doc.get("results", []):
        if (row.get("convergence") or {}).get("stalled"):
            key = (row["entry"], row["dataset"])
            stalled[key] = stalled.get(key, 0) + 1
        sweep = row.get("sweep") or {}
        drop = sweep.get("accuracy_drop")  # recorded by the bench since it knows the drop
        if drop is None:
            sweep_file = resolve_recorded(row.get("sweep_file"), result.path)
            drop = sweep_numbers(sweep_file, None)["accuracy_drop"]
        if drop is None and angles:
            drop = accuracy_drop_of_summary(sweep, angles)
        drops.setdefault((row["entry"], row["dataset"]), []).append(drop)
    negatives = {(g["entry"], g["dataset"]): g
                 for g in (doc.get("negatives") or {}).get("summary") or []}
    rows = []
    for group in doc.get("summary", []):
        key = (group["entry"], group["dataset"])
        entry = entries.get(group["entry"], {})
        metrics = {k: dict(group.get("metrics", {}).get(k) or stat([]))
                   for k in TEST_METRICS}
        metrics.update({k: dict(negatives.get(key, {}).get(k) or stat([]))
                        for k in NEGATIVE_METRICS})
        metrics["consistency_off90"] = dict(
            (group.get("sweep") or {}).get("consistency_off90") or stat([]))
        metrics["accuracy_drop"] = stat(drops.get(key, []))
        for value in metrics.values():
            value["mean"] = None if value.get("n", 0) == 0 else value["mean"]
        rows.append({
            "dataset": labels.get(group["dataset"], group["dataset"]), "label": group["entry"],
            "params": entry.get("params"), "macs_256": entry.get("macs_256"),
            "train_seconds": group.get("train_seconds"), "metrics": metrics,
            "spread": "seeds", "n": group.get("n"), "stalled": stalled.get(key, 0),
        })
    return rows


def _negative_stats(evaluated: dict[str, Any]) -> dict[str, Stat]:
    """:data:`NEGATIVE_METRICS` of one evaluation, each one value (none: ``n`` 0)."""
    from polypseg.bench.collect import negatives_metrics

    found = negatives_metrics(evaluated) or {}
    return {k: {"mean": found.get(k), "std": None, "n": int(found.get(k) is not None)}
            for k in NEGATIVE_METRICS}


def _angles(doc: dict[str, Any]) -> list[float]:
    """The swept angles of a bench result (its settings' ``angles`` text), or none."""
    from polypseg.geometry import parse_angles

    text = (doc.get("settings") or {}).get("angles")
    try:
        return parse_angles(str(text)) if text else []
    except ValueError:
        return []


def stalled_entries(study: Any) -> dict[str, set[str]]:
    """Dataset label -> the entries of the study's bench results with a stalled seed."""
    out: dict[str, set[str]] = {}
    for result in study.quality:
        for row in quality_rows(result):
            if row.get("stalled"):
                out.setdefault(row["dataset"], set()).add(row["label"])
    return out


def comparison_rows(result: QualityResult) -> list[dict[str, Any]]:
    """The bench's paired comparisons (``comparisons``: per-image Dice differences with 95%
    bootstrap intervals), dataset labels resolved; empty when the result has none."""
    labels = {k: v.get("label", k) for k, v in (result.doc.get("datasets") or {}).items()}
    rows = []
    for item in result.doc.get("comparisons") or []:
        if not isinstance(item, dict):
            continue
        rows.append({**item, "dataset": labels.get(item.get("dataset"), item.get("dataset"))})
    return rows
