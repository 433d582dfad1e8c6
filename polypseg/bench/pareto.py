"""Pareto plots of a quality benchmark: test Dice against training cost and parameters.

One figure per dataset, two panels: test Dice (mean over seeds, bar: sample std) against the
training cost per image (CPU seconds of one training step divided by the batch, from
``polypseg bench cost``: measured side by side, so the entries' costs compare fairly) and
against the parameter count. The Pareto front, the entries that no other entry beats on both
cost and Dice, is joined by a line. An evaluation-only entry (``unet+tta``) costs its source's
training; it is drawn hollow, since it pays at inference (4 forward passes) instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polypseg.plotting import _pyplot, _save, curve_styles, log_ticks, separate_labels


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated by another (lower-or-equal cost and higher-or-equal
    score, one of them strictly), ordered by cost."""
    front = []
    for i, (cost, score) in enumerate(points):
        dominated = any(
            c <= cost and s >= score and (c < cost or s > score)
            for j, (c, s) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def _points(doc: dict[str, Any], costs: dict[str, float], dataset: str) -> list[dict[str, Any]]:
    entries = {e["name"]: e for e in doc.get("entries", [])}
    points = []
    for row in doc.get("summary", []):
        if row["dataset"] != dataset or "dice" not in row.get("metrics", {}):
            continue
        entry = entries.get(row["entry"], {})
        source = entry.get("source") or row["entry"]
        variant = entry.get("variant") or entries.get(source, {}).get("variant")
        dice = row["metrics"]["dice"]
        points.append({
            "name": row["entry"], "variant": variant, "params": entry.get("params"),
            "cost": costs.get(source), "dice": dice["mean"], "std": dice.get("std") or 0.0,
            "derived": bool(entry.get("source") or entry.get("rot_aug")),
            "eval_only": bool(entry.get("source")),
        })
    return points


def label_offsets(xs: list[float], ys: list[float], *, log_x: bool = True,
                  near: float = 0.04) -> list[tuple[int, int]]:
    """Text offsets in points for the labels of points at ``(xs, ys)``: ``(6, 5)``, except
    that labels of points within ``near`` of each other (as fractions of the data's span, x
    on a log scale when ``log_x``) stack downwards, 11 points apart, so none covers another.

    Args:
        xs, ys: the points' coordinates in data units, one per label.
        log_x: compare x on a log10 scale (the x axis is logarithmic).
        near: the distance, as a fraction of each axis's span, below which labels stack.
    """
    import math

    def scaled(values: list[float], log: bool) -> list[float]:
        values = [math.log10(v) if log else v for v in values]
        span = (max(values) - min(values)) or 1.0
        return [(v - min(values)) / span for v in values]

    sx, sy = scaled(xs, log_x), scaled(ys, False)
    offsets: list[tuple[int, int]] = []
    for i in range(len(xs)):
        below = sum(1 for j in range(i) if abs(sx[i] - sx[j]) < near and abs(sy[i] - sy[j]) < near)
        offsets.append((6, 5 - 11 * below))
    return offsets


def plot_pareto(doc: dict[str, Any], cost_doc: dict[str, Any] | None, out: Path) -> list[Path]:
    """Write ``pareto-PLAN-DATASET.{png,svg}`` into ``out`` for every dataset of ``doc``
    (a ``quality-PLAN.json`` document); ``cost_doc`` is ``cost-PLAN.json`` (``None``: the
    parameter panel alone). Returns the files written."""
    plt = _pyplot()
    costs = {m["name"]: m["seconds_per_image"] for m in (cost_doc or {}).get("models", [])}
    labels = {k: v.get("label", k) for k, v in doc.get("datasets", {}).items()}
    written: list[Path] = []
    for dataset in dict.fromkeys(r["dataset"] for r in doc.get("summary", [])):
        points = _points(doc, costs, dataset)
        if not points:
            continue
        panels = [("params", "parameters")]
        if costs:
            panels.insert(0, ("cost", "training CPU seconds per image (one thread)"))
        fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.8),
                                 squeeze=False)
        ax_labels: list[list[Any]] = []
        for ax, (key, label) in zip(axes[0], panels, strict=True):
            styles = dict(zip([p["name"] for p in points],
                              curve_styles([p["variant"] for p in points]), strict=True))
            usable = [p for p in points if isinstance(p[key], (int, float))]
            offsets = label_offsets([p[key] for p in usable], [p["dice"] for p in usable])
            annotations = []
            for p, offset in zip(usable, offsets, strict=True):
                colour = styles[p["name"]]["color"]
                ax.errorbar(p[key], p["dice"], yerr=p["std"], fmt=styles[p["name"]]["marker"],
                            markersize=8, color=colour, mfc="none" if p["eval_only"] else colour,
                            capsize=3, label=p["name"])
                annotations.append(ax.annotate(p["name"], (p[key], p["dice"]),
                                               textcoords="offset points", xytext=offset,
                                               fontsize=9))
            front = pareto_front([(p[key], p["dice"]) for p in usable])
            ax.plot([usable[i][key] for i in front], [usable[i]["dice"] for i in front],
                    color="0.4", linestyle="--", linewidth=1, zorder=0, label="Pareto front")
            ax.set_xscale("log")
            log_ticks(ax.xaxis)
            ax.set_xlabel(label + " (log scale)")
            ax.set_ylabel("test Dice (mean ± std over seeds)")
            ax.grid(True, alpha=0.3, which="both")
            ax_labels.append(annotations)
        handles, names = axes[0][0].get_legend_handles_labels()
        fig.suptitle(f"{labels.get(dataset, dataset)}, plan {doc.get('label', doc.get('plan'))}: "
                     "test Dice against cost (hollow: evaluation-only entry, pays at inference)",
                     fontsize=11)
        fig.tight_layout()
        fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5),
                   frameon=False, fontsize=9)
        for annotations in ax_labels:
            separate_labels(fig, annotations)
        try:
            written += _save(fig, Path(out) / f"pareto-{doc.get('plan')}-{dataset}")
        finally:
            plt.close(fig)
    return written
