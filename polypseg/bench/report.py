"""Benchmark reports: mean +- std over seeds, and the markdown tables of quality and speed.

Pure functions over the JSON documents that :mod:`polypseg.bench.quality` and
:mod:`polypseg.bench.speed` write, so the tables can be rebuilt from ``results/*.json`` alone
(``polypseg bench report``) and tested from known numbers.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from polypseg.bench.fractions import fractions_markdown

#: Per-image metrics of the quality table, in order: key, column title, higher is better.
METRICS: tuple[tuple[str, str, bool], ...] = (
    ("dice", "Dice", True),
    ("iou", "IoU", True),
    ("precision", "Precision", True),
    ("recall", "Recall", True),
    ("hd95", "HD95 (px)", False),
)
#: The field's suite (PraNet's evaluation, pysodmetrics; polypseg.metrics.FIELD_METRIC_NAMES),
#: a second table per dataset: key, column title, higher is better.
FIELD_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("mdice", "mDice", True),
    ("miou", "mIoU", True),
    ("s_measure", "S-measure", True),
    ("weighted_f", "weighted F", True),
    ("e_measure_mean", "mean E", True),
    ("e_measure_max", "max E", True),
    ("mae", "MAE", False),
)
#: Summaries of the rotation sweep, in order: key, column title, higher is better.
SWEEP_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("accuracy_mean", "Sweep Dice mean", True),
    ("accuracy_min", "Sweep Dice min", True),
    ("consistency_off90", "Consistency off-90", True),
    ("accuracy_drop", "Dice drop under rotation", False),
)
PM = "±"


def mean_std(values: Iterable[float]) -> tuple[float, float | None, int]:
    """``(mean, sample std, n)`` of the finite values; std is ``None`` below two values.

    NaN/inf values (e.g. HD95 of an empty prediction) are left out; no finite value gives a
    NaN mean.
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return math.nan, None, 0
    if len(finite) == 1:
        return finite[0], None, 1
    return statistics.fmean(finite), statistics.stdev(finite), len(finite)


def format_mean_std(values: Iterable[float], digits: int = 3) -> str:
    """``"0.812 ± 0.013"`` (sample std over seeds); ``"0.812"`` for one value; ``"n/a"``."""
    mean, std, n = mean_std(values)
    if n == 0:
        return "n/a"
    if std is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} {PM} {std:.{digits}f}"


def format_count(value: float | None) -> str:
    """``1.96M``, ``412k``, ``3.2G``: parameter and MAC counts for a table."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:g}"


def format_seconds(seconds: float | None) -> str:
    """``"42 s"``, ``"3.5 min"``, ``"1.2 h"``."""
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _table(
    header: Sequence[str], rows: Iterable[Sequence[str]], align: Sequence[str] | None = None
) -> list[str]:
    """A markdown table's lines; ``align`` gives each column's rule (``---``, ``--:``)."""
    rules = align if align is not None else ["---" for _ in header]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rules) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group per-run results by (entry, dataset) into mean/std/n of every metric.

    Each result holds ``entry``, ``dataset``, ``seed``, ``metrics`` (metric -> value),
    optionally ``sweep`` (summary -> value) and ``train_seconds``. The order of first
    appearance is kept.
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault((result["entry"], result["dataset"]), []).append(result)
    summary = []
    for (entry, dataset), runs in groups.items():
        row: dict[str, Any] = {"entry": entry, "dataset": dataset, "n": len(runs),
                               "seeds": [r.get("seed") for r in runs]}
        for section in ("metrics", "sweep"):
            keys = {k for r in runs for k in (r.get(section) or {})}
            row[section] = {}
            for key in sorted(keys):
                values = [(r.get(section) or {}).get(key) for r in runs]
                mean, std, n = mean_std(v for v in values if isinstance(v, (int, float)))
                row[section][key] = {"mean": mean, "std": std, "n": n}
        seconds = [r["train_seconds"] for r in runs if r.get("train_seconds") is not None]
        row["train_seconds"] = mean_std(seconds)[0] if seconds else None
        summary.append(row)
    return summary


def _cell(stat: dict[str, Any] | None, digits: int, bold: bool) -> str:
    if not stat or stat.get("n", 0) == 0:
        return "n/a"
    mean, std = stat["mean"], stat.get("std")
    text = f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} {PM} {std:.{digits}f}"
    return f"**{text}**" if bold else text


def _best(rows: list[dict[str, Any]], section: str, key: str, higher: bool) -> float | None:
    means = [
        r[section][key]["mean"]
        for r in rows
        if key in r.get(section, {}) and math.isfinite(r[section][key]["mean"])
    ]
    if not means:
        return None
    return max(means) if higher else min(means)


def _metric_size(doc: dict[str, Any]) -> str:
    """Where the metrics were taken: evaluations with the field's suite are at each mask's own
    size (polypseg.evaluation); earlier ones at the model's input size."""
    native = any("mdice" in (r.get("metrics") or {}) for r in doc.get("results", []))
    return "the mask's own size" if native else "the model's input size"


def _field_table(rows: list[dict[str, Any]]) -> list[str]:
    """The field's metrics of one dataset's entries (nothing when the runs predate them)."""
    if not any(key in row.get("metrics", {}) for row in rows for key, _, _ in FIELD_METRICS):
        return []
    body = []
    for row in rows:
        cells = [row["entry"]]
        for metric, _, higher in FIELD_METRICS:
            stat = row.get("metrics", {}).get(metric)
            best = _best(rows, "metrics", metric, higher)
            is_best = (stat is not None and best is not None and len(rows) > 1
                       and round(stat["mean"], 3) == round(best, 3))
            cells.append(_cell(stat, 3, is_best))
        body.append(cells)
    return ["The field's metrics (PraNet's evaluation through pysodmetrics: mDice and mIoU "
            "averaged over 256 thresholds of the min-max-normalised probability map; docs/"
            "results.md, \"Metrics\"):", "",
            *_table(["Entry", *(t for _, t, _ in FIELD_METRICS)], body), ""]


def quality_markdown(doc: dict[str, Any]) -> str:
    """The markdown report of a quality benchmark document (``quality-PLAN.json``)."""
    settings = doc.get("settings", {})
    label = doc.get("label", doc.get("plan", "?"))
    lines = [f"# Quality benchmark: plan {label}", ""]
    if doc.get("reduced"):
        lines += [
            "> **REDUCED plan**: smaller images, narrower models, fewer epochs/seeds and images "
            "than the full protocol (docs/design.md). The numbers compare the variants under one "
            "small budget; they are not the full-protocol results.",
            "",
        ]
    hardware = doc.get("hardware", {})
    limits = ", ".join(
        f"{k} {settings[k]}" for k in ("limit_train", "limit_val", "limit_test", "sweep_limit")
        if settings.get(k)
    )
    lines += [
        f"- Date: {doc.get('date', '?')}; hardware: {hardware.get('device', '?')} "
        f"({hardware.get('device_name', '?')}, {hardware.get('threads', '?')} torch threads)",
        f"- Schedule (every run): {settings.get('size')} px, depth {settings.get('depth')}, "
        f"{settings.get('epochs')} epochs, batch {settings.get('batch_size')}, "
        f"lr {settings.get('lr')}, seeds {settings.get('seeds')}"
        + (f"; subsets: {limits}" if limits else ""),
        f"- Sweep angles: {settings.get('angles')} degrees. Metrics per test image at "
        f"{_metric_size(doc)}, averaged; mean {PM} sample std over seeds (one seed: no std).",
    ]
    if doc.get("command"):
        lines.append(f"- Command: `{doc['command']}`")
    if doc.get("missing"):
        lines.append(f"- Unfinished, left out: {len(doc['missing'])} evaluations")
    lines.append("")
    entries = {e["name"]: e for e in doc.get("entries", [])}
    summary = doc.get("summary") or summarize(doc.get("results", []))
    datasets = doc.get("datasets", {})
    for key in dict.fromkeys(r["dataset"] for r in summary):
        rows = [r for r in summary if r["dataset"] == key]
        info = datasets.get(key, {})
        lines += [f"## {info.get('label', key)}", ""]
        if info.get("counts"):
            counts = info["counts"]
            lines += [", ".join(f"{k}: {v} images" for k, v in counts.items()), ""]
        header = ["Entry", "Params", "MACs@256", *(t for _, t, _ in METRICS),
                  *(t for _, t, _ in SWEEP_METRICS), "Train time/run", "n"]
        body = []
        for row in rows:
            entry = entries.get(row["entry"], {})
            cells = [row["entry"], format_count(entry.get("params")),
                     format_count(entry.get("macs_256"))]
            for section, specs in (("metrics", METRICS), ("sweep", SWEEP_METRICS)):
                for metric, _, higher in specs:
                    stat = row.get(section, {}).get(metric)
                    best = _best(rows, section, metric, higher)
                    digits = 2 if metric == "hd95" else 3
                    is_best = (stat is not None and best is not None and len(rows) > 1
                               and round(stat["mean"], digits) == round(best, digits))
                    cells.append(_cell(stat, digits, is_best))
            cells += [format_seconds(row.get("train_seconds")), str(row["n"])]
            body.append(cells)
        lines += _table(header, body)
        lines.append("")
        lines += _field_table(rows)
        for plot in doc.get("plots", []):  # this dataset's own figures (not the fractions')
            what = {"pareto-": "Pareto", "sweep-": "Dice vs angle"}.get(plot.split("-", 1)[0] + "-")
            if what and plot.endswith(f"-{key}.png"):
                lines += [f"![{what}, {info.get('label', key)}]({plot})", ""]
    lines += fractions_markdown(doc)
    lines += comparisons_markdown(doc)
    from polypseg.bench.counterpart import counterpart_markdown  # both import this module
    from polypseg.bench.negatives import markdown as negatives_markdown

    lines += counterpart_markdown(doc)

    lines += negatives_markdown(doc)
    lines += cross_markdown(doc)
    lines += convergence_markdown(doc)
    lines += _entry_notes(doc)
    return "\n".join(lines).rstrip() + "\n"


def _signed(value: float) -> str:
    return f"{value:+.3f}"


#: How a paired difference's verdict reads: above 0, below 0, neither.
VERDICT_WORDS = ("better", "worse", "no difference shown")


def interval_text(row: dict[str, Any], words: tuple[str, str, str] = VERDICT_WORDS,
                  bold: bool = True) -> str:
    """``+0.012 [-0.010, +0.034] no difference shown``: a paired difference (the keys of
    :func:`polypseg.bench.stats.paired_bootstrap`) with its verdict in ``words``.

    Args:
        row: ``diff_mean``, ``ci_low``, ``ci_high`` and ``verdict``.
        words: what the verdict reads as above 0, below 0 and neither.
        bold: mark a shown verdict (above or below 0) bold, as markdown.
    """
    verdict = {"better": words[0], "worse": words[1]}.get(row["verdict"])
    shown = words[2] if verdict is None else f"**{verdict}**" if bold else verdict
    return (f"{_signed(row['diff_mean'])} [{_signed(row['ci_low'])}, "
            f"{_signed(row['ci_high'])}] {shown}")


def comparisons_markdown(doc: dict[str, Any]) -> list[str]:
    """Per dataset: each entry's paired Dice difference to each baseline, with its CI."""
    rows = doc.get("comparisons") or []
    if not rows:
        return []
    datasets = doc.get("datasets", {})
    baselines = list(dict.fromkeys(r["baseline"] for r in rows))
    level = rows[0].get("level", 0.95)
    lines = [
        "## Paired differences in test Dice",
        "",
        f"Entry minus baseline, mean per-image Dice difference with a {level:.0%} bootstrap "
        "confidence interval over test images and training seeds (paired on images); "
        "**better** / **worse** when the interval excludes 0, else no difference shown.",
        "",
    ]
    for key in dict.fromkeys(r["dataset"] for r in rows):
        lines += [f"### {datasets.get(key, {}).get('label', key)}", ""]
        body = []
        for entry in dict.fromkeys(r["entry"] for r in rows if r["dataset"] == key):
            cells = [entry]
            for baseline in baselines:
                match = [r for r in rows if r["dataset"] == key and r["entry"] == entry
                         and r["baseline"] == baseline]
                if not match:
                    cells.append("n/a")
                    continue
                cells.append(interval_text(match[0]))
            seeds = {tuple(r["n_seeds"]) for r in rows if r["dataset"] == key
                     and r["entry"] == entry}
            cells.append(", ".join(f"{a} vs {b}" for a, b in sorted(seeds)))
            body.append(cells)
        lines += _table(["Entry", *(f"vs {b}" for b in baselines), "seeds"], body)
        lines.append("")
    return lines


def cross_markdown(doc: dict[str, Any]) -> list[str]:
    """Cross-dataset generalisation: per training dataset, the test Dice on its own test split
    and on each other dataset's (mean ± std over seeds)."""
    rows = doc.get("cross_summary") or []
    if not rows:
        return []
    datasets = doc.get("datasets", {})

    def label(key: str) -> str:
        return str(datasets.get(key, {}).get("label", key))

    own = {(r["entry"], r["dataset"]): r for r in doc.get("summary", [])}
    columns: list[tuple[str, str]] = []  # (trained on, tested on), each once
    for trained_on in dict.fromkeys(r["trained_on"] for r in rows):
        columns.append((trained_on, trained_on))
        columns += dict.fromkeys((trained_on, r["dataset"]) for r in rows
                                 if r["trained_on"] == trained_on)
    header = ["Entry"] + [f"{label(t)}-trained, {label(d)} test" for t, d in columns]
    body = []
    for entry in dict.fromkeys(r["entry"] for r in rows):
        cells = [entry]
        for trained_on, tested_on in columns:
            if trained_on == tested_on:
                found = own.get((entry, tested_on))
            else:
                found = next((r for r in rows if r["entry"] == entry
                              and r["trained_on"] == trained_on
                              and r["dataset"] == tested_on), None)
            cells.append(_cell(found["metrics"].get("dice"), 3, False) if found else "n/a")
        body.append(cells)
    return ["## Cross-dataset generalisation (test Dice)", "",
            "Each run tested on its own dataset's test split and on the other's (mean ± std over "
            "seeds).", "", *_table(header, body), ""]


def convergence_markdown(doc: dict[str, Any]) -> list[str]:
    """One paragraph: how many runs levelled off, and which did not."""
    runs = [r for r in doc.get("results", []) if r.get("convergence")
            and r.get("entry") == r.get("trained_as", r.get("entry"))]
    if not runs:
        return []
    levelled = [r for r in runs if r["convergence"].get("levelled_off")]
    early = [r for r in levelled if r["convergence"].get("stopped_early")]
    epochs = [r["convergence"]["epochs"] for r in runs]
    options = doc.get("settings", {}).get("train_options") or {}
    patience, floor = options.get("patience", 0), options.get("min_epochs", 0)
    text = (f"{len(levelled)} of {len(runs)} runs levelled off: {len(early)} stopped early "
            f"(no better validation Dice for {patience} epochs"
            + (f", and at least {floor} epochs trained" if floor else "") + "), "
            f"{len(levelled) - len(early)} reached the epoch cap with a validation gain below "
            f"0.01 over their last {patience} epochs. Epochs trained: {min(epochs)}-"
            f"{max(epochs)} (median {statistics.median(epochs):g}).")
    lines = ["## Convergence", "", text]
    stalled = [r for r in runs if r["convergence"].get("stalled")]
    if stalled:
        lines += ["", "Stalled (validation Dice never rose 0.01 above its first epoch's: a failed "
                     "start, not a converged model; its scores still count in every table): "
                     + ", ".join(f"{r['dataset']}/{r['entry']}/seed{r['seed']} (best validation "
                                 f"Dice {r['convergence']['best_val_dice']:.3f} at epoch "
                                 f"{r['convergence']['best_epoch']}, stopped at epoch "
                                 f"{r['convergence']['epochs']})" for r in stalled) + "."]
    rest = [r for r in runs if not r["convergence"].get("levelled_off")
            and not r["convergence"].get("stalled")]
    if rest:
        lines += ["", "Not levelled off: " + ", ".join(
            f"{r['dataset']}/{r['entry']}/seed{r['seed']} (gain "
            f"{(r['convergence'].get('late_gain') or 0):.3f})" for r in rest) + "."]
    return [*lines, ""]


def _entry_notes(doc: dict[str, Any]) -> list[str]:
    lines = ["## Entries", ""]
    body = []
    for entry in doc.get("entries", []):
        how = []
        if entry.get("source"):
            how.append(f"runs of {entry['source']}, evaluated with tta={entry.get('tta')}")
        else:
            how.append(f"variant {entry.get('variant')}, width {entry.get('width')}")
            if entry.get("match"):
                how.append(f"width matched to {entry['match']}'s parameters")
            if entry.get("rot_aug"):
                how.append("rotation augmentation in training")
            if entry.get("negatives"):
                how.append(f"{entry['negatives']:.0%} of each epoch negatives (background only)")
        if entry.get("note"):
            how.append(entry["note"])
        body.append([entry["name"], "; ".join(how), format_count(entry.get("params"))])
    lines += _table(["Entry", "How", "Params"], body)
    lines += [
        "",
        "Bold: best mean of the column within the dataset. Sweep Dice: accuracy "
        "Dice(pred(rot x), rot y) in the inscribed disc, mean and minimum over the angles. "
        "Consistency off-90: Dice(rot pred(x), pred(rot x)) averaged over the angles that are "
        "not multiples of 90 degrees (exactly 1 at multiples of 90 for p4-invariant models). "
        "Train time/run: wall time of one training run on the recorded hardware, where runs "
        "may share it (--jobs) with each other and other work; the controlled cost comparison "
        "is the speed benchmark.",
    ]
    return lines


def speed_page(title: str, facts: Sequence[str], command: str | None, body: Sequence[str]) -> str:
    """Every speed report's markdown: ``# title``, the facts as a bullet list (the command
    last), a blank line, then ``body``'s lines.

    Args:
        title: the heading (it names the device).
        facts: the bullets: date, device, input, method.
        command: the command that measured, or ``None``.
        body: the sections and tables.
    """
    lines = [f"# {title}", "", *(f"- {fact}" for fact in facts)]
    if command:
        lines.append(f"- Command: `{command}`")
    return "\n".join([*lines, "", *body]).rstrip() + "\n"


def speed_markdown(doc: dict[str, Any]) -> str:
    """The markdown report of a speed benchmark document (``speed*.json``)."""
    settings = doc.get("settings", {})
    facts = [
        f"Date: {doc.get('date', '?')}; device: {doc.get('device')} "
        f"({doc.get('device_name', '?')}), torch {doc.get('torch', '?')}, threads "
        f"{settings.get('threads', '?')}",
        f"Input: batch {settings.get('batch_size')} x 3 x {settings.get('size')} x "
        f"{settings.get('size')}; {settings.get('repeats')} interleaved repeats after "
        f"{settings.get('warmup')} warm-up step(s) per model; median time per step.",
        f"Memory: {doc.get('memory_method', '?')}",
    ]
    if doc.get("label"):
        facts.append(f"Note: {doc['label']}")
    lines = ["## U-Net variants against MONAI UNet", ""]
    header = ["Model", "Width", "Params", "MACs@256", "Train img/s", "Train ratio",
              "Infer img/s", "Infer ratio", "Train peak MiB", "Infer peak MiB"]
    body = []
    for row in doc.get("models", []):
        body.append([
            row["name"], str(row.get("width", "")), format_count(row.get("params")),
            format_count(row.get("macs")),
            _num(row.get("train_images_per_s")), _ratio(row.get("train_time_ratio")),
            _num(row.get("infer_images_per_s")), _ratio(row.get("infer_time_ratio")),
            _num(row.get("train_peak_mib"), 0), _num(row.get("infer_peak_mib"), 0),
        ])
    lines += _table(header, body)
    lines += [
        "",
        "Ratios are step time / MONAI UNet step time (1.0 = as fast; 2.0 = twice as slow), "
        "measured in the same process, interleaved.",
    ]
    if doc.get("exported"):
        lines += ["", "## Exported plain models (`model.export()`) against the originals "
                  "(inference, eval mode)", ""]
        body = [[r["name"], _num(r.get("original_images_per_s")),
                 _num(r.get("exported_images_per_s")), _ratio(r.get("exported_time_ratio")),
                 _num(r.get("max_abs_diff"), 2, sci=True)] for r in doc["exported"]]
        lines += _table(["Model", "Original img/s", "Exported img/s",
                         "Exported / original time", "Max abs diff"], body)
    title = f"Speed benchmark ({doc.get('device_name', doc.get('device', '?'))})"
    return speed_page(title, facts, doc.get("command"), lines)


def _num(value: float | None, digits: int = 1, sci: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}e}" if sci else f"{value:.{digits}f}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.2f}x"
