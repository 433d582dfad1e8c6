"""The negatives part of a quality benchmark: false positives and frame-level rates per entry,
and each entry trained with negatives against its twin trained without.

Read from the evaluations' ``negatives`` and ``frame_level`` sections
(:mod:`polypseg.negatives_eval`). Per (dataset, entry): mean ± std over seeds of the test Dice,
the false-positive rate on the test negatives, their mean predicted foreground, and the
frame-level sensitivity/specificity. Per entry with ``negatives`` > 0 and its twin (the entry
of the same variant, width, match, rot_aug and depth without): paired bootstrap intervals
(:func:`polypseg.bench.stats.paired_bootstrap`, over images or negatives and seeds) of the
differences in Dice, in the false-positive indicator, and in the frame-level decisions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from polypseg.bench.plan import EntrySpec, Plan
from polypseg.bench.report import PM, _table, mean_std
from polypseg.bench.runs import RunSpec, eval_file

#: The columns of the summary: (key of the row's ``negatives``, title, higher is better).
COLUMNS = (
    ("false_positive_rate", "FPR on negatives", False),
    ("mean_pred_fraction", "mean fg on negatives", False),
    ("frame_sensitivity", "frame sensitivity", True),
    ("frame_specificity", "frame specificity", True),
)


def twin(plan: Plan, entry: EntrySpec) -> EntrySpec | None:
    """The entry trained as ``entry`` but without negatives (``None`` when there is none)."""
    if not entry.trains or not entry.negatives:
        return None
    for other in plan.training_entries():
        if not other.negatives and (other.variant, other.width, other.match, other.rot_aug,
                                    other.depth) == (entry.variant, entry.width, entry.match,
                                                     entry.rot_aug, entry.depth):
            return other
    return None


def summary(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean/std/n over seeds per (dataset, entry) of the rows that have negatives data."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in results:
        if row.get("negatives"):
            groups.setdefault((row["dataset"], row["entry"]), []).append(row)
    out = []
    for (dataset, entry), rows in groups.items():
        stats = {}
        for key, _, _ in COLUMNS:
            mean, std, n = mean_std(r["negatives"].get(key) for r in rows)
            stats[key] = {"mean": mean, "std": std, "n": n}
        mean, std, n = mean_std(r["metrics"].get("dice") for r in rows)
        stats["dice"] = {"mean": mean, "std": std, "n": n}
        out.append({"dataset": dataset, "entry": entry, "n": len(rows), **stats})
    return out


def _scores(spec: RunSpec, entry: str) -> dict[str, dict[str, float]] | None:
    """Per-item scores of one run's own test evaluation of ``entry``: Dice and the frame
    decision per image, the false-positive indicator and "called absent" per negative."""
    import json

    evaluation = next((e for e in spec.evaluations if e.entry == entry and not e.cross), None)
    if evaluation is None:
        return None
    try:
        doc = json.loads(eval_file(spec, evaluation).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    negatives, frame = doc.get("negatives"), doc.get("frame_level")
    if not negatives or not frame or "present" not in frame:
        return None
    fp_area = float(negatives.get("fp_area", 0.005))
    rows = negatives.get("images", [])
    return {
        "dice": {str(r["stem"]): float(r["dice"]) for r in doc.get("images", [])},
        "false_positive": {r["stem"]: float(r["pred_fraction"] > fp_area) for r in rows},
        "sensitivity": {s: float(v) for s, v in frame["present"].items()},
        "specificity": {r["stem"]: float(not r["polyp_present"]) for r in rows},
    }


def comparisons(plan: Plan, specs: list[RunSpec]) -> list[dict[str, Any]]:
    """Per dataset and entry with negatives: the paired differences to its twin."""
    from polypseg.bench.stats import paired_bootstrap

    scores: dict[tuple[str, str], list[dict[str, dict[str, float]]]] = {}
    for spec in specs:
        got = _scores(spec, spec.entry)
        if got is not None:
            scores.setdefault((spec.dataset, spec.entry), []).append(got)
    out = []
    for dataset in plan.datasets:
        for entry in plan.training_entries():
            base = twin(plan, entry)
            ours = scores.get((dataset.key, entry.name))
            theirs = scores.get((dataset.key, base.name)) if base else None
            if not ours or not theirs:
                continue
            row: dict[str, Any] = {"dataset": dataset.key, "entry": entry.name,
                                   "without": base.name}
            for key in ("dice", "false_positive", "sensitivity", "specificity"):
                try:
                    row[key] = paired_bootstrap([s[key] for s in ours], [s[key] for s in theirs])
                except ValueError:  # no item scored by every run of both sides
                    row[key] = None
            out.append(row)
    return out


def _fmt(stat: dict[str, Any] | None, digits: int = 3) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    std = stat.get("std")
    return f"{stat['mean']:.{digits}f}" + (f" {PM} {std:.{digits}f}" if std is not None else "")


def _diff(result: dict[str, Any] | None) -> str:
    if not result:
        return "n/a"
    return (f"{result['diff_mean']:+.3f} [{result['ci_low']:+.3f}, {result['ci_high']:+.3f}]")


def markdown(doc: dict[str, Any]) -> list[str]:
    """The negatives section of a quality report (nothing when the document has none)."""
    section = doc.get("negatives") or {}
    rows, pairs = section.get("summary") or [], section.get("comparisons") or []
    if not rows:
        return []
    datasets = doc.get("datasets", {})
    lines = [
        "## Images without a polyp",
        "",
        "One negative per test image (a crop clear of its mask, fixed seed; "
        "`polypseg.data.negatives`). FPR: share of negatives with more than 0.5% of the image "
        "predicted foreground. Frame level: 'polyp present' by each run's own thresholds "
        "(chosen on validation for specificity 0.95); sensitivity on the test images, "
        f"specificity on the negatives. Mean {PM} std over seeds.",
        "",
    ]
    for key in dict.fromkeys(r["dataset"] for r in rows):
        lines += [f"### {datasets.get(key, {}).get('label', key)}", ""]
        body = [[r["entry"], _fmt(r.get("dice")), *(_fmt(r.get(k)) for k, _, _ in COLUMNS),
                 str(r["n"])] for r in rows if r["dataset"] == key]
        lines += _table(["Entry", "Dice", *(t for _, t, _ in COLUMNS), "n"], body)
        lines.append("")
        mine = [p for p in pairs if p["dataset"] == key]
        if mine:
            lines += ["With negatives minus without (paired, 95% bootstrap interval over "
                      "images or negatives and seeds):", ""]
            body = [[f"{p['entry']} vs {p['without']}", _diff(p["dice"]),
                     _diff(p["false_positive"]), _diff(p["sensitivity"]),
                     _diff(p["specificity"])] for p in mine]
            lines += _table(["Entry", "Δ Dice", "Δ FPR", "Δ frame sensitivity",
                             "Δ frame specificity"], body)
            lines.append("")
    return lines
