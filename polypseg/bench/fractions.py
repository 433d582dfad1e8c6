"""Dice against the share of labelled images (a plan whose datasets list ``train_fractions``).

A scarce-labels plan (``plans/cpu-data.yaml``) trains every entry on nested subsets of each
training split; each fraction is a dataset of the plan (``kvasir-10``, ..., ``kvasir``), so the
usual tables and paired comparisons are made per fraction. This module adds what reads across
the fractions: per base dataset and entry, the mean test Dice at every fraction with its 95%
hierarchical bootstrap interval over test images and seeds (:func:`.stats.bootstrap_mean`),
the plot of those curves, and the markdown tables of the curves and of each entry's paired
difference to each baseline at every fraction (the rows of ``comparisons``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polypseg.bench.plan import Plan
from polypseg.bench.runs import RunSpec


def has_fractions(plan: Plan) -> bool:
    """Whether any dataset of ``plan`` trains on a fraction of its training split."""
    return any(d.train_fraction < 1 for d in plan.datasets)


def fraction_curves(plan: Plan, specs: list[RunSpec]) -> list[dict[str, Any]]:
    """Per base dataset, entry and fraction (plan order): the mean per-image test Dice over the
    finished runs with its bootstrap interval, ``n_train`` (training images of the subset)
    and the plan dataset's key. Empty for a plan without fractions.

    Args:
        plan: the plan.
        specs: its runs (unfinished ones add nothing).
    """
    from polypseg.bench.collect import test_scores
    from polypseg.bench.stats import bootstrap_mean

    if not has_fractions(plan):
        return []
    scores = test_scores(specs)
    rows = []
    for dataset in plan.datasets:
        for entry in plan.entries:
            runs = scores.get((dataset.key, entry.name))
            if runs:
                rows.append({"dataset": dataset.base_key, "plan_dataset": dataset.key,
                             "train_fraction": dataset.train_fraction, "entry": entry.name,
                             **bootstrap_mean(runs)})
    bases = list(dict.fromkeys(d.base_key for d in plan.datasets))
    entries = [e.name for e in plan.entries]
    return sorted(rows, key=lambda r: (bases.index(r["dataset"]), entries.index(r["entry"]),
                                       r["train_fraction"]))


def _percent(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def fractions_markdown(doc: dict[str, Any]) -> list[str]:
    """The curves as tables (rows: entries, columns: fractions) and each entry's paired
    difference to each baseline at every fraction, per base dataset."""
    from polypseg.bench.report import interval_text  # the report imports this module

    rows = doc.get("fractions") or []
    if not rows:
        return []
    datasets = doc.get("datasets", {})
    level = rows[0].get("level", 0.95)
    lines = [
        "## Dice against the share of labelled images",
        "",
        f"Mean per-image test Dice with a {level:.0%} bootstrap interval over test images and "
        "seeds, by the share of the training split trained on (nested subsets; the validation "
        "and test splits are the same at every share; each run takes the whole split's "
        "optimiser steps).",
        "",
    ]
    comparisons = doc.get("comparisons") or []
    plan_keys = {(r["dataset"], r["train_fraction"]): r["plan_dataset"] for r in rows}
    for base in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == base]
        fractions = sorted({r["train_fraction"] for r in mine})
        label = datasets.get(base, {}).get("label", base)
        counts = [datasets.get(plan_keys[(base, f)], {}).get("counts", {}).get("train")
                  for f in fractions]
        header = ["Entry", *(f"{_percent(f)}" + (f" ({n} images)" if n else "")
                             for f, n in zip(fractions, counts, strict=True))]
        body = []
        for entry in dict.fromkeys(r["entry"] for r in mine):
            cells = [entry]
            for fraction in fractions:
                hit = [r for r in mine if r["entry"] == entry and r["train_fraction"] == fraction]
                cells.append(f"{hit[0]['mean']:.3f} [{hit[0]['ci_low']:.3f}, "
                             f"{hit[0]['ci_high']:.3f}] ({hit[0]['n_seeds']})" if hit else "n/a")
            body.append(cells)
        lines += [f"### {label}: test Dice", "",
                  "| " + " | ".join(header) + " |",
                  "|" + "---|" + "--:|" * len(fractions)]
        lines += ["| " + " | ".join(c) + " |" for c in body]
        lines.append("")
        paired = [c for c in comparisons
                  if (base, _fraction_of(c["dataset"], plan_keys, base)) in plan_keys]
        if paired:
            lines += [f"### {label}: paired difference to each baseline", ""]
            header = ["Entry", "Baseline", *(_percent(f) for f in fractions)]
            lines += ["| " + " | ".join(header) + " |", "|---|---|" + "--:|" * len(fractions)]
            pairs = dict.fromkeys((c["entry"], c["baseline"]) for c in paired)
            for entry, baseline in pairs:
                cells = [entry, baseline]
                for fraction in fractions:
                    key = plan_keys.get((base, fraction))
                    hit = [c for c in paired if c["dataset"] == key and c["entry"] == entry
                           and c["baseline"] == baseline]
                    cells.append(interval_text(hit[0]) if hit else "n/a")
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    for plot in doc.get("plots", []):
        if plot.startswith("fractions-") and plot.endswith(".png"):
            lines += [f"![Dice against the share of labelled images]({plot})", ""]
    return lines


def _fraction_of(plan_dataset: str, plan_keys: dict[tuple[str, float], str],
                 base: str) -> float | None:
    for (b, fraction), key in plan_keys.items():
        if b == base and key == plan_dataset:
            return fraction
    return None




def plot_fraction_curves(doc: dict[str, Any], plan: Plan, out: Path) -> list[Path]:
    """``fractions-PLAN-DATASET.{png,svg}`` per base dataset (:func:`.plotting.plot_fractions`)."""
    from polypseg.plotting import plot_fractions

    rows = doc.get("fractions") or []
    written: list[Path] = []
    for base in dict.fromkeys(r["dataset"] for r in rows):
        label = doc.get("datasets", {}).get(base, {}).get("label", base)
        written += plot_fractions(
            [r for r in rows if r["dataset"] == base],
            out / f"fractions-{plan.name}-{base}",
            title=f"{label}, plan {plan.label}: test Dice by share of labelled images",
            variants={e.name: e.variant or plan.entry(e.source).variant for e in plan.entries},
        )
    return written
