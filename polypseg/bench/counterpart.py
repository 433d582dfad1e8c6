"""A plan's entries against their counterparts in another plan (the plan's ``compare_with``).

Two plans that differ in one setting (``plans/cpu-192.yaml`` at 192 px against the 96-px runs
of ``plans/cpu-negatives.yaml`` trained with the same recipe) test on the same test images
(same datasets, same split seed), so their per-image Dice pair up. Per dataset both plans
train on, over the images every compared run scored (:func:`.stats.paired_contrast`: images
drawn once for every side, each side's seeds independently):

* **entry**: an entry here minus its counterpart there (``+1, -1``): what the setting that
  differs does to that entry;
* **gain**: the entry's gain over each baseline of this plan that has a counterpart, here
  (``entry - baseline``) and there (``entry' - baseline'``), and the **change** of that gain
  (``(entry - baseline) - (entry' - baseline')``, a difference in differences): "better"
  means the gain grows here, "worse" that it shrinks, and an interval holding 0 that no
  change is shown;
* **cross**: an entry here minus its counterpart there on another dataset's test split
  (``cross_dataset``): with **entry**, whether the setting narrows the gap between a model's
  own test images and images of another source (new sequences, another centre).

The other plan's runs are read where its ``runs`` folder keeps them; nothing is trained.
"""

from __future__ import annotations

from typing import Any

from polypseg.bench.plan import Plan, PlanError
from polypseg.bench.report import _table, interval_text
from polypseg.bench.runs import RunSpec


def compare_plans(plan: Plan, specs: list[RunSpec]) -> dict[str, Any]:
    """The ``counterpart`` section of ``plan``'s results document.

    Returns ``plan``, ``plan_file``, ``note``, ``size`` (here, there), ``entries`` (one row
    per dataset and entry with a counterpart: ``counterpart`` and the contrast's keys) and
    ``gains`` (one row per dataset, entry and baseline: ``here``, ``there`` and ``change``,
    each a contrast). Rows need finished runs on both sides.

    Args:
        plan: the plan, whose ``compare_with`` names the other.
        specs: its runs (:func:`polypseg.bench.runs.plan_runs`).
    """
    from polypseg.bench.collect import test_scores
    from polypseg.bench.plan import load_plan
    from polypseg.bench.runs import plan_runs
    from polypseg.bench.stats import paired_contrast

    counterpart = plan.compare_with
    if counterpart is None:
        raise PlanError(f"plan {plan.name!r} names no compare_with")
    other = load_plan(counterpart.plan_file, check_paths=False, root=plan.root)
    names = {e.name for e in other.entries}
    unknown = sorted({theirs for _, theirs in counterpart.entries} - names)
    if unknown:
        raise PlanError(f"compare_with.entries: {unknown} are not entries of plan "
                        f"{other.name!r} ({', '.join(sorted(names))})")
    other_specs = plan_runs(other)
    here, there = test_scores(specs), test_scores(other_specs)
    mapping = dict(counterpart.entries)
    shared = [d.key for d in plan.datasets if d.key in {o.key for o in other.datasets}]
    entries, gains = [], []
    for dataset in shared:
        for entry, theirs in counterpart.entries:
            a, a2 = here.get((dataset, entry)), there.get((dataset, theirs))
            if not a or not a2:
                continue
            entries.append({"dataset": dataset, "entry": entry, "counterpart": theirs,
                            **paired_contrast([(1.0, a), (-1.0, a2)])})
            for baseline in plan.baselines:
                b = here.get((dataset, baseline))
                b2 = there.get((dataset, mapping.get(baseline, "")))
                # as in the plan's own comparisons, a baseline is set against the baselines
                # listed before it only (unet-wide against unet, not unet against unet-wide)
                if entry in plan.baselines and (
                        plan.baselines.index(baseline) >= plan.baselines.index(entry)):
                    continue
                if not b or not b2:
                    continue
                gains.append({
                    "dataset": dataset, "entry": entry, "baseline": baseline,
                    "counterpart": theirs, "baseline_counterpart": mapping[baseline],
                    "here": paired_contrast([(1.0, a), (-1.0, b)]),
                    "there": paired_contrast([(1.0, a2), (-1.0, b2)]),
                    "change": paired_contrast([(1.0, a), (-1.0, b), (-1.0, a2), (1.0, b2)]),
                })
    cross_here, cross_there = test_scores(specs, cross=True), test_scores(other_specs, cross=True)
    cross = []
    for (trained_on, tested_on, entry), a in cross_here.items():
        a2 = cross_there.get((trained_on, tested_on, mapping.get(entry, "")))
        if a2:
            cross.append({"dataset": trained_on, "tested_on": tested_on, "entry": entry,
                          "counterpart": mapping[entry],
                          **paired_contrast([(1.0, a), (-1.0, a2)])})
    return {"plan": other.name, "plan_file": plan.relative(counterpart.plan_file),
            "note": counterpart.note, "size": [plan.size, other.size],
            "entries": entries, "gains": gains, "cross": cross}


#: How a verdict reads (:func:`polypseg.bench.report.interval_text`): an entry against its
#: counterpart; the change of a gain.
DIFFERENCE_WORDS = ("higher", "lower", "no difference shown")
CHANGE_WORDS = ("grows", "shrinks", "no change shown")


def counterpart_markdown(doc: dict[str, Any]) -> list[str]:
    """The section of a quality report on the counterparts (nothing without one)."""
    section = doc.get("counterpart") or {}
    if not section.get("entries"):
        return []
    here, there = section["size"]
    other = section["plan"]
    datasets = doc.get("datasets", {})
    lines = [
        f"## Against plan {other} ({there} px)",
        "",
        f"Each entry at {here} px against its counterpart of plan `{other}` "
        f"(`{section['plan_file']}`" + (f"; {section['note']}" if section.get("note") else "")
        + "), on the same test images: the difference of mean per-image Dice, and how each "
        "entry's gain over a baseline changes between the two. 95% hierarchical bootstrap "
        "intervals over test images (paired) and seeds.",
        "",
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in section["entries"]):
        label = datasets.get(dataset, {}).get("label", dataset)
        rows = [r for r in section["entries"] if r["dataset"] == dataset]
        lines += [f"### {label}: {here} px minus {there} px", ""]
        lines += _table(["Entry", f"Counterpart in {other}", "Dice difference", "seeds"],
                        ([r["entry"], r["counterpart"], interval_text(r, DIFFERENCE_WORDS),
                          " vs ".join(map(str, r["n_seeds"]))] for r in rows))
        gains = [g for g in section["gains"] if g["dataset"] == dataset]
        if gains:
            lines += ["", f"### {label}: gain over each baseline at {here} px and {there} px",
                      ""]
            lines += _table(
                ["Entry", "Baseline", f"gain at {here} px", f"gain at {there} px",
                 f"change ({here} minus {there})"],
                ([g["entry"], g["baseline"], interval_text(g["here"]), interval_text(g["there"]),
                  interval_text(g["change"], CHANGE_WORDS)] for g in gains))
        cross = [c for c in section.get("cross") or [] if c["dataset"] == dataset]
        if cross:
            lines += ["", f"### Trained on {label}, tested on another dataset: {here} px minus "
                      f"{there} px", ""]
            lines += _table(["Entry", "Tested on", "Dice difference", "seeds"],
                            ([c["entry"], datasets.get(c["tested_on"], {}).get(
                                "label", c["tested_on"]), interval_text(c, DIFFERENCE_WORDS),
                              " vs ".join(map(str, c["n_seeds"]))] for c in cross))
        lines.append("")
    return lines
