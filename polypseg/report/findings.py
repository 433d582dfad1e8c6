"""The answer first: what a bench quality study found, in one table and a few sentences.

Everything here is read from the study's JSON (``quality-PLAN.json``) and, when it lies beside
it, the training-cost result of the same plan (``cost-PLAN.json``): never typed by hand. The
report puts it at the top of its page (:func:`findings_html`) and the README between its
``findings`` markers (:func:`findings_markdown`, written by ``scripts/readme_findings.py``).

Per dataset, each entry's test Dice (mean over seeds), its paired difference to each reference
baseline (``unet``, ``unet-wide``) with the bench's bootstrap interval and verdict, its training
cost relative to ``unet``, and the seeds that stalled; then the cross-dataset Dice (trained on
one dataset, tested on the other).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polypseg.report import html

#: The baselines every entry is set against (when the study compared to them).
REFERENCES = ("unet", "unet-wide")


@dataclass
class Versus:
    """One paired comparison: entry minus baseline, per-image test Dice."""

    diff: float
    low: float
    high: float
    verdict: str


@dataclass
class EntryFinding:
    """One entry on one dataset."""

    entry: str
    dice: float | None
    n_seeds: int
    versus: dict[str, Versus] = field(default_factory=dict)
    stalled: list[int] = field(default_factory=list)
    """Seeds whose training stalled (kept in the mean, never crowned)."""


@dataclass
class Findings:
    """What a study found: per dataset its entries, the cross-dataset Dice, the costs."""

    plan: str
    level: float
    labels: dict[str, str]
    datasets: dict[str, list[EntryFinding]]
    cross: dict[tuple[str, str], dict[str, float]]
    """``(trained on, tested on)`` -> entry -> mean test Dice over seeds."""
    cost: dict[str, float]
    """Entry -> training cost relative to unet."""
    cost_kind: str
    """What :attr:`cost` measures, in words."""
    inference: dict[str, str] = field(default_factory=dict)
    """Entry -> a note on its inference cost where it differs from training (TTA)."""


def _cost(doc: dict[str, Any], cost_doc: dict[str, Any] | None) -> tuple[dict[str, float], str]:
    """Training cost of each entry relative to unet: the measured step time of the plan's cost
    result when there is one, else the MACs per image."""
    if cost_doc and cost_doc.get("models"):
        ratios = {m["name"]: float(m["ratio"]) for m in cost_doc["models"]
                  if isinstance(m.get("ratio"), (int, float))}
        for entry in doc.get("entries", []):
            source = entry.get("source") or ("unet" if entry.get("tta") else None)
            if entry["name"] not in ratios and source in ratios:
                ratios[entry["name"]] = ratios[source]
        return ratios, "training-step time relative to unet, measured by bench cost"
    entries = {e["name"]: e for e in doc.get("entries", [])}
    base = (entries.get("unet") or {}).get("macs_256")
    if not base:
        return {}, ""
    return ({name: e["macs_256"] / base for name, e in entries.items() if e.get("macs_256")},
            "multiply-accumulates per image relative to unet")


def study_findings(doc: dict[str, Any], cost_doc: dict[str, Any] | None = None) -> Findings:
    """The :class:`Findings` of a bench quality document (and its plan's cost document)."""
    labels = {k: v.get("label", k) for k, v in (doc.get("datasets") or {}).items()}
    order = [e["name"] for e in doc.get("entries", [])]
    comparisons = [c for c in doc.get("comparisons") or [] if isinstance(c, dict)]
    level = float(next((c.get("level") for c in comparisons if c.get("level")), 0.95))
    stalled: dict[tuple[str, str], list[int]] = {}
    for row in doc.get("results", []):
        if (row.get("convergence") or {}).get("stalled"):
            stalled.setdefault((row["entry"], row["dataset"]), []).append(int(row["seed"]))
    datasets: dict[str, list[EntryFinding]] = {}
    for group in doc.get("summary", []):
        dice = ((group.get("metrics") or {}).get("dice") or {})
        finding = EntryFinding(entry=group["entry"], dice=dice.get("mean"),
                               n_seeds=int(group.get("n") or 0),
                               stalled=stalled.get((group["entry"], group["dataset"]), []))
        for c in comparisons:
            if (c.get("dataset"), c.get("entry")) == (group["dataset"], group["entry"]) and \
                    c.get("baseline") in REFERENCES and c.get("diff_mean") is not None:
                finding.versus[c["baseline"]] = Versus(
                    float(c["diff_mean"]), float(c["ci_low"]), float(c["ci_high"]),
                    str(c.get("verdict", "")))
        datasets.setdefault(group["dataset"], []).append(finding)
    for rows in datasets.values():
        rows.sort(key=lambda f: order.index(f.entry) if f.entry in order else len(order))
    cross: dict[tuple[str, str], dict[str, float]] = {}
    for group in doc.get("cross_summary") or []:
        mean = (((group.get("metrics") or {}).get("dice")) or {}).get("mean")
        if mean is not None:
            cross.setdefault((group["trained_on"], group["dataset"]), {})[group["entry"]] = mean
    cost, kind = _cost(doc, cost_doc)
    inference = {e["name"]: f"{e['tta']} test-time averaging: 4x inference"
                 for e in doc.get("entries", []) if e.get("tta") == "rot90"}
    return Findings(plan=str(doc.get("plan", "")), level=level, labels=labels,
                    datasets=datasets, cross=cross, cost=cost, cost_kind=kind,
                    inference=inference)


def load_findings(quality_file: str | Path) -> Findings:
    """:func:`study_findings` of ``quality-PLAN.json``, with ``cost-PLAN.json`` beside it."""
    path = Path(quality_file)
    doc = json.loads(path.read_text(encoding="utf-8"))
    cost_file = path.parent / f"cost-{doc.get('plan')}.json"
    cost_doc = json.loads(cost_file.read_text(encoding="utf-8")) if cost_file.is_file() else None
    return study_findings(doc, cost_doc)


# -- words ------------------------------------------------------------------------------------
def _names(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _range(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:+.3f}" if abs(high - low) < 5e-4 else f"{low:+.3f} to {high:+.3f}"


def dataset_sentence(findings: Findings, key: str) -> str:
    """What the paired comparisons on one dataset show, in plain words."""
    rows = findings.datasets.get(key, [])
    label = findings.labels.get(key, key)
    parts = []
    for baseline in REFERENCES:
        compared = [f for f in rows if baseline in f.versus]
        if not compared:
            continue
        better = [f for f in compared if f.versus[baseline].verdict == "better"]
        worse = [f for f in compared if f.versus[baseline].verdict == "worse"]
        if better:
            parts.append(f"{_names([f.entry for f in better])} "
                         f"{'beats' if len(better) == 1 else 'beat'} {baseline} "
                         f"(Dice {_range([f.versus[baseline].diff for f in better])})")
        else:
            parts.append(f"no entry beats {baseline}")
        if worse:
            parts.append(f"{_names([f.entry for f in worse])} "
                         f"{'is' if len(worse) == 1 else 'are'} worse than {baseline}")
    if not parts:
        return ""
    text = f"On {label}: " + "; ".join(parts) + (
        f". Every other difference's {findings.level:.0%} interval contains 0.")
    stalled = [f for f in rows if f.stalled]
    if stalled:
        text += " Stalled: " + "; ".join(
            f"{f.entry} seed{'s' if len(f.stalled) > 1 else ''} "
            f"{', '.join(map(str, f.stalled))}" for f in stalled) + (
            " (kept in its mean, never counted best).")
    return text


def cross_sentence(findings: Findings) -> str:
    """The cross-dataset result in plain words (best entry against the references)."""
    parts = []
    for (trained, tested), dice in findings.cross.items():
        if not dice:
            continue
        best = max(dice, key=lambda e: dice[e])
        refs = [f"{r} {dice[r]:.3f}" for r in REFERENCES if r in dice and r != best]
        above = [e for e in dice if all(dice[e] > dice[r] for r in REFERENCES if r in dice)
                 and e not in REFERENCES]
        parts.append(
            f"trained on {findings.labels.get(trained, trained)} and tested on "
            f"{findings.labels.get(tested, tested)}, {best} scores best ({dice[best]:.3f}"
            + (f"; {', '.join(refs)}" if refs else "") + f"), and {len(above)} of "
            f"{len(dice) - len([r for r in REFERENCES if r in dice])} other entries score above "
            "both references")
    if not parts:
        return ""
    return "Across datasets: " + "; ".join(parts) + " (means over seeds; no interval computed)."


def cost_sentence(findings: Findings) -> str:
    """Training costs relative to unet, in plain words."""
    if not findings.cost:
        return ""
    shown = [f.entry for f in next(iter(findings.datasets.values()), [])
             if f.entry in findings.cost and f.entry != "unet"]
    return ("Cost, " + findings.cost_kind + ": " + ", ".join(
        f"{e} {findings.cost[e]:.1f}x" for e in shown) + "."
        + "".join(f" {e}: {note}." for e, note in findings.inference.items()))


def sentences(findings: Findings) -> list[str]:
    """The plain-words lines: one per dataset, the cross-dataset result, the costs."""
    lines = [dataset_sentence(findings, key) for key in findings.datasets]
    lines += [cross_sentence(findings), cost_sentence(findings)]
    return [line for line in lines if line]


# -- the table --------------------------------------------------------------------------------
def _versus(finding: EntryFinding | None, baseline: str) -> str:
    if finding is None or baseline not in finding.versus:
        if finding is None:
            return ""
        return "(reference)" if finding.entry == baseline else "n/a"
    v = finding.versus[baseline]
    mark = {"better": " better", "worse": " worse"}.get(v.verdict, "")
    return f"{v.diff:+.3f} [{v.low:+.3f}, {v.high:+.3f}]{mark}"


def table_rows(findings: Findings) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the findings table: one row per entry, per dataset its Dice and
    difference to each reference, then the cross-dataset Dice and the cost."""
    keys = list(findings.datasets)
    entries = list(dict.fromkeys(f.entry for k in keys for f in findings.datasets[k]))
    header = ["Entry"]
    for key in keys:
        label = findings.labels.get(key, key)
        header += [f"{label} Dice", *(f"vs {r}" for r in REFERENCES)]
    header += [f"{findings.labels.get(a, a)} to {findings.labels.get(b, b)}"
               for a, b in findings.cross]
    header.append("Train cost")
    rows = []
    for entry in entries:
        row = [entry]
        for key in keys:
            finding = next((f for f in findings.datasets[key] if f.entry == entry), None)
            dice = "" if finding is None or finding.dice is None else f"{finding.dice:.3f}"
            if finding is not None and finding.stalled:
                dice += " (stalled seed)"
            row += [dice, *(_versus(finding, r) for r in REFERENCES)]
        row += [f"{d[entry]:.3f}" if entry in d else "" for d in findings.cross.values()]
        row.append(f"{findings.cost[entry]:.2f}x" if entry in findings.cost else "")
        rows.append(row)
    return header, rows


def findings_markdown(findings: Findings) -> str:
    """The findings as markdown: the sentences, then the table and how to read it."""
    header, rows = table_rows(findings)
    lines = [f"- {line}" for line in sentences(findings)]
    lines += ["", "| " + " | ".join(header) + " |",
              "|" + "|".join(["---", *(["--:"] * (len(header) - 1))]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", f"Dice: test-set mean over seeds. vs: paired per-image test-Dice difference "
              f"(entry minus reference) with its {findings.level:.0%} bootstrap interval over "
              "images and seeds; \"better\"/\"worse\" where the interval excludes 0. Train "
              f"cost: {findings.cost_kind}."]
    return "\n".join(lines) + "\n"


def _cell_html(text: str) -> str:
    """A table cell: a difference with its interval on a second, smaller line."""
    diff, sep, rest = text.partition(" [")
    if not sep:
        return html.esc(text)
    return f'{html.esc(diff)}<br><small>[{html.esc(rest)}</small>'


def findings_html(findings: Findings) -> str:
    """The findings box of the report page (escaped)."""
    header, rows = table_rows(findings)
    items = "".join(f"<li>{html.esc(line)}</li>" for line in sentences(findings))
    body = [[(_cell_html(c), "better" if c.endswith(" better") else
              "worse" if c.endswith(" worse") else "") for c in row] for row in rows]
    return (f'<div class="findings"><ul>{items}</ul>'
            # headers wrap between words only (no break at a name's hyphen)
            + html.table([h.replace("-", "\u2011") for h in header], body, "findings")
            + f'<p class="note">Dice: test-set mean over seeds. vs: paired per-image test-Dice '
              f"difference (entry minus reference) with its {findings.level:.0%} bootstrap "
              "interval over images and seeds; better/worse where the interval excludes 0. "
              f"Train cost: {html.esc(findings.cost_kind)}.</p></div>")
