"""One self-contained HTML page for a study: :func:`build_report` and
:func:`write_quality_report` (what ``polypseg bench quality`` writes next to its tables).

Sections, each left out when there is nothing to show: summary (per dataset, one row per
model: parameters, MACs, Dice, IoU, HD95, consistency off-90, accuracy drop, training time),
paired comparisons with confidence intervals (when the bench computed them), Dice against
rotation angle, training curves, the gallery of each model (:mod:`polypseg.report.gallery`),
and configuration and provenance.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from polypseg.bench.report import format_count, format_seconds
from polypseg.report import html
from polypseg.report.gallery import (
    BOTH,
    ONLY_ROTATED,
    ONLY_ZERO,
    Comparison,
    Gallery,
    build_comparison,
    build_gallery,
)
from polypseg.report.inputs import (
    Study,
    SweepResult,
    collect,
    read_json,
    resolve_recorded,
    run_meta,
)
from polypseg.report.summary import NEGATIVE_METRICS, comparison_rows, quality_rows, run_row

Progress = Callable[[str], None]

#: Summary columns: metric key, title, digits, whether higher is better (None: no best; a
#: drop near 0 is the aim, and a negative one is no merit of the model).
COLUMNS: tuple[tuple[str, str, int, bool | None], ...] = (
    ("dice", "Dice", 3, True),
    ("iou", "IoU", 3, True),
    ("hd95", "HD95 (px)", 1, False),
    ("mdice", "mDice", 3, True),
    ("miou", "mIoU", 3, True),
    ("s_measure", "S-measure", 3, True),
    ("weighted_f", "weighted F", 3, True),
    ("e_measure_mean", "mean E", 3, True),
    ("e_measure_max", "max E", 3, True),
    ("mae", "MAE", 3, False),
    ("false_positive_rate", "FPR on negatives", 3, False),
    ("frame_sensitivity", "frame sensitivity", 3, True),
    ("frame_specificity", "frame specificity", 3, True),
    ("consistency_off90", "Consistency off-90", 3, True),
    ("accuracy_drop", "Accuracy drop", 3, None),
)

#: The field's suite among :data:`COLUMNS` (shown only where the evaluations hold it).
FIELD_KEYS = frozenset(("mdice", "miou", "s_measure", "weighted_f", "e_measure_mean",
                        "e_measure_max", "mae"))
#: Columns shown only where some row holds them: the field's suite and the negatives'
#: (evaluations made before either existed have neither).
OPTIONAL_KEYS = FIELD_KEYS | frozenset(NEGATIVE_METRICS)


def _quiet(_message: str) -> None:
    pass


def _fmt(stat: dict[str, Any] | None, digits: int) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    text = f"{stat['mean']:.{digits}f}"
    if stat.get("std") is not None:
        text += f" ± {stat['std']:.{digits}f}"
    return text


def _plural(n: int | None, noun: str) -> str:
    """``1 seed``, ``3 seeds``, ``n/a``; ``noun`` is the plural."""
    if n is None:
        return "n/a"
    return f"{n} {noun[:-1] if n == 1 and noun.endswith('s') else noun}"


# -- sections ---------------------------------------------------------------------------------
def _summary_section(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    parts = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        group = [r for r in rows if r["dataset"] == dataset]
        # the field's suite and the negatives' rates only where the evaluations hold them
        columns = [c for c in COLUMNS if c[0] not in OPTIONAL_KEYS
                   or any((r["metrics"].get(c[0]) or {}).get("mean") is not None for r in group)]
        best: dict[str, float] = {}
        for key, _, _, higher in columns:
            means = [r["metrics"][key]["mean"] for r in group if not r.get("stalled")
                     and (r["metrics"].get(key) or {}).get("mean") is not None]
            if len(means) > 1 and higher is not None:
                best[key] = max(means) if higher else min(means)
        body = []
        for row in group:
            label = html.esc(row["label"]) + (
                f' <span class="stalled">({_plural(row["stalled"], "seeds")} stalled)</span>'
                if row.get("stalled") else "")
            cells = [(label, ""), (format_count(row["params"]), ""),
                     (format_count(row["macs_256"]), "")]
            for key, _, digits, _ in columns:
                stat = row["metrics"].get(key)
                is_best = (key in best and stat and stat.get("mean") is not None
                           and not row.get("stalled")
                           and round(stat["mean"], digits) == round(best[key], digits))
                cells.append((_fmt(stat, digits), "best" if is_best else ""))
            spread = _plural(row.get("n"), row["spread"])
            cells += [(format_seconds(row["train_seconds"]), ""), (html.esc(spread), "")]
            body.append(cells)
        header = ["Model", "Params", "MACs@256", *(t for _, t, _, _ in columns), "Train time",
                  "n"]
        parts.append(f"<h3>{html.esc(dataset or 'dataset not recorded')}</h3>"
                     + html.table(header, body, "summary"))
    spreads = {r["spread"] for r in rows}
    kinds = {"seeds": "sample standard deviation (n - 1) over the seeds of an entry (bench "
                      "results: its runs' test means)",
             "images": "population standard deviation (n) over the test images, as "
                       "eval/test.json records it (a run folder's evaluation)"}
    over = "; ".join(kinds[s] for s in sorted(spreads))
    parts.append(
        '<p class="note">Mean ± ' + html.esc(over) + "; n counts "
        "what the spread is over. Bold: best of the column within the dataset, among entries "
        "without a stalled seed (a stalled run predicts nearly one mask for every input, "
        "which is trivially consistent under rotation). Consistency "
        "off-90: Dice(rot pred(x), pred(rot x)) in the inscribed disc, averaged over the swept "
        "angles that are not multiples of 90°. Accuracy drop: the sweep's accuracy Dice(pred(rot "
        "x), rot y) at 0° minus its mean over the other swept angles, on the same images "
        "(positive: worse when the image is turned). "
        "MACs per 256×256 image. Train time: wall time of one run as recorded (runs may have "
        "shared the machine).</p>"
    )
    return "".join(parts)


def _seeds(value: Any) -> str:
    """``3`` or, for ``[entry seeds, baseline seeds]``, ``3 / 3``."""
    if isinstance(value, (list, tuple)):
        return " / ".join(str(v) for v in value)
    return str(value) if value is not None else "n/a"


def _comparisons_section(study: Study) -> str:
    parts = []
    level = 0.95
    for result in study.quality:
        rows = comparison_rows(result)
        if not rows:
            continue
        level = float(rows[0].get("level") or level)
        body = []
        for row in rows:
            verdict = str(row.get("verdict", ""))
            cls = {"better": "better", "worse": "worse"}.get(verdict, "")
            ci = (f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
                  if isinstance(row.get("ci_low"), (int, float))
                  and isinstance(row.get("ci_high"), (int, float)) else "n/a")
            diff = row.get("diff_mean")
            body.append([
                (html.esc(row.get("dataset", "")), ""), (html.esc(row.get("entry", "")), ""),
                (html.esc(row.get("baseline", "")), ""),
                (f"{diff:+.3f}" if isinstance(diff, (int, float)) else "n/a", ""),
                (ci, ""), (html.esc(verdict), cls),
                (html.esc(row.get("n_images", "")), ""), (html.esc(_seeds(row.get("n_seeds"))), ""),
            ])
        parts.append(html.table(
            ["Dataset", "Entry", "Baseline", "Dice difference", f"{level:.0%} CI", "Verdict",
             "Images", "Seeds"], body, "comparisons"))
    if not parts:
        return ""
    parts.append('<p class="note">Paired per-image test Dice differences (entry minus '
                 f"baseline), mean and {level:.0%} bootstrap confidence interval over images and "
                 "seeds, as computed by the bench; \"no difference shown\" when the interval "
                 "contains 0. Seeds: the entry's / the baseline's.</p>")
    return "".join(parts)


def _fractions_section(study: Study) -> str:
    """Dice against the share of labelled images (a scarce-labels study's ``fractions``): per
    dataset a table of each entry's mean test Dice and interval at every share, and the
    bench's plot of the curves beside its result."""
    from polypseg.report.figures import file_uri

    parts = []
    for result in study.quality:
        rows = result.doc.get("fractions") or []
        labels = {k: v.get("label", k) for k, v in (result.doc.get("datasets") or {}).items()}
        for base in dict.fromkeys(r["dataset"] for r in rows):
            mine = [r for r in rows if r["dataset"] == base]
            shares = sorted({r["train_fraction"] for r in mine})
            body = []
            for entry in dict.fromkeys(r["entry"] for r in mine):
                cells = [(html.esc(entry), "")]
                for share in shares:
                    hit = [r for r in mine if r["entry"] == entry and r["train_fraction"] == share]
                    cells.append((f"{hit[0]['mean']:.3f} [{hit[0]['ci_low']:.3f}, "
                                  f"{hit[0]['ci_high']:.3f}]" if hit else "n/a", ""))
                body.append(cells)
            level = float(mine[0].get("level") or 0.95)
            parts.append(f"<h3>{html.esc(labels.get(base, base))}</h3>")
            parts.append(html.table(["Entry", *(f"{100 * s:g}% of the training split"
                                                for s in shares)], body, "fractions"))
            parts.append(f'<p class="note">Mean per-image test Dice and its {level:.0%} '
                         "bootstrap interval over test images and seeds; nested subsets, the "
                         "same validation and test images at every share, each run the whole "
                         "split's optimiser steps.</p>")
            name = f"fractions-{result.doc.get('plan')}-{base}.svg"
            path = result.path.parent / name
            if name in result.doc.get("plots", []) and path.is_file():
                parts.append(html.plot(file_uri(path), name, "Test Dice against the share of "
                                       "labelled images", "fractions"))
    return "".join(parts)


def _counterpart_section(study: Study) -> str:
    """Each entry against its counterpart in another plan (a study's ``counterpart``: 192 px
    against 96 px), and how its gain over each baseline changes between the two."""
    from polypseg.bench.counterpart import CHANGE_WORDS, DIFFERENCE_WORDS
    from polypseg.bench.report import interval_text

    parts = []
    for result in study.quality:
        section = result.doc.get("counterpart") or {}
        if not section.get("entries"):
            continue
        here, there = section["size"]
        labels = {k: v.get("label", k) for k, v in (result.doc.get("datasets") or {}).items()}
        for dataset in dict.fromkeys(r["dataset"] for r in section["entries"]):
            rows = [r for r in section["entries"] if r["dataset"] == dataset]
            parts.append(f"<h3>{html.esc(labels.get(dataset, dataset))}: {here} px against "
                         f"{there} px (plan {html.esc(section['plan'])})</h3>")
            parts.append(html.table(
                ["Entry", "Counterpart", f"Dice, {here} px minus {there} px"],
                [[(html.esc(r["entry"]), ""), (html.esc(r["counterpart"]), ""),
                  (html.esc(interval_text(r, DIFFERENCE_WORDS, bold=False)), "")]
                 for r in rows], "counterpart"))
            gains = [g for g in section["gains"] if g["dataset"] == dataset]
            if gains:
                parts.append(html.table(
                    ["Entry", "Baseline", f"gain at {here} px", f"gain at {there} px",
                     "change"],
                    [[(html.esc(g["entry"]), ""), (html.esc(g["baseline"]), ""),
                      *((html.esc(interval_text(g[k], bold=False)), "")
                        for k in ("here", "there")),
                      (html.esc(interval_text(g["change"], CHANGE_WORDS, bold=False)),
                       "")] for g in gains], "counterpart-gains"))
            cross = [c for c in section.get("cross") or [] if c["dataset"] == dataset]
            if cross:
                parts.append(html.table(
                    ["Entry", "Tested on", f"Dice, {here} px minus {there} px"],
                    [[(html.esc(c["entry"]), ""),
                      (html.esc(labels.get(c["tested_on"], c["tested_on"])), ""),
                      (html.esc(interval_text(c, DIFFERENCE_WORDS, bold=False)), "")]
                     for c in cross], "counterpart-cross"))
        parts.append('<p class="note">Paired over the same test images: mean per-image Dice '
                     "differences with 95% hierarchical bootstrap intervals over images and "
                     "seeds; the change is the gain here minus the gain there.</p>")
    return "".join(parts)


def _own_sweeps(study: Study) -> list[SweepResult]:
    """Sweeps of run folders (``RUN/sweep``) that no sweep given on the command line holds."""
    given = {s.path.resolve() for s in study.sweeps}
    own: dict[Path, SweepResult] = {}
    for view in study.models:
        if view.source != "run" or view.sweep_file is None:
            continue
        key = view.sweep_file.resolve()
        if key not in given and key not in own:
            own[key] = SweepResult(view.sweep_file, read_json(view.sweep_file))
    return list(own.values())


def _bench_sweeps(study: Study) -> list[tuple[str, str]]:
    """``(uri, dataset label)`` of each bench Dice-vs-angle plot: the bench's own SVG when it is
    beside the result, else drawn from the best run of each entry."""
    from polypseg.report.figures import file_uri, sweep_plot

    plots = []
    for result in study.quality:
        labels = {k: v.get("label", k) for k, v in (result.doc.get("datasets") or {}).items()}
        for key, label in labels.items():
            name = f"sweep-{result.doc.get('plan')}-{key}.svg"
            path = result.path.parent / name
            if name in result.doc.get("plots", []) and path.is_file():
                plots.append((file_uri(path), label))
                continue
            sweeps = []
            for view in study.models:
                if view.source == "bench" and view.dataset == label and view.sweep_file:
                    doc = read_json(view.sweep_file)
                    for run in doc.get("runs", []):
                        run["name"] = run["variant"] = view.label
                    sweeps.append(SweepResult(view.sweep_file, doc))
            if sweeps:
                plots.append((sweep_plot(sweeps, f"{label}: best run per entry"), label))
    return plots


def _other_bench_plots(study: Study) -> str:
    """The bench's other SVG plots beside its result (e.g. Dice against cost), as they are."""
    from polypseg.report.figures import file_uri

    parts = []
    for result in study.quality:
        for name in result.doc.get("plots", []):
            path = result.path.parent / name
            if (name.endswith(".svg") and not name.startswith(("sweep-", "fractions-"))
                    and path.is_file()):
                parts.append(html.plot(file_uri(path), name, f"{name} (written by the bench)",
                                       "bench"))
    return "".join(parts)


def _rotation_section(study: Study) -> str:
    from polypseg.report.figures import sweep_plot

    parts = []
    caption = ("Left: consistency Dice(rot(pred(x)), pred(rot(x))); right: accuracy "
               "Dice(pred(rot(x)), rot(y)); both inside the inscribed disc, mean over the swept "
               "test images with the 25-75% band. Dotted: multiples of 90°.")
    for uri, label in _bench_sweeps(study):
        parts.append(html.plot(uri, f"Dice against rotation angle, {label}",
                               f"{label}. {caption}", "sweep"))
    for sweep in [*study.sweeps, *_own_sweeps(study)]:
        doc = sweep.doc
        label = f"{doc.get('dataset', '')} {doc.get('subset', '')}, {doc.get('n_images')} images"
        parts.append(html.plot(sweep_plot([sweep]), f"Dice against rotation angle, {label}",
                               f"{label} ({sweep.path}). {caption}", "sweep"))
    return "".join(parts)


def _training_section(study: Study, progress: Progress) -> str:
    from polypseg.errors import PolypsegError
    from polypseg.report.figures import training_plot

    by_dataset: dict[str, dict[Path, str]] = {}
    for view in study.models:
        if view.run_dir is None or not (view.run_dir / "metrics.csv").is_file():
            continue
        runs = by_dataset.setdefault(view.dataset, {})
        runs.setdefault(view.run_dir.resolve(), view.label)
    parts = []
    for dataset, runs in by_dataset.items():
        try:
            uri = training_plot(list(runs), list(runs.values()))
        except PolypsegError as err:
            progress(f"training curves of {dataset}: {err}")
            parts.append(html.notes([str(err)]))
            continue
        parts.append(html.plot(
            uri, f"Training curves, {dataset}",
            f"{dataset or 'runs'}: loss (solid: train, dashed: validation), validation Dice "
            "(star: best epoch, the checkpoint evaluated) and learning rate per epoch.",
            "training"))
    return "".join(parts)


def _swatch(rgb: tuple[int, int, int]) -> str:
    return f'<span style="background:rgb{rgb}"></span>'


def _tile_rows(rows: Sequence[Any]) -> list[str]:
    """One labelled row of image tiles per gallery row (its stem, note and tiles)."""
    from polypseg.report.figures import data_uri

    out = []
    for row in rows:
        tiles = "".join(html.tile(data_uri(t.png, "image/png"), t.caption) for t in row.tiles)
        out.append(f'<div class="row"><div class="label"><b>{html.esc(row.stem)}</b>'
                   f'{html.esc(row.note)}</div><div class="tiles">{tiles}</div></div>')
    return out


def _comparison_html(comparison: Comparison) -> str:
    """One dataset's models side by side on the same test images."""

    parts = [f'<article class="compare" data-dataset="{html.esc(comparison.dataset)}">'
             f"<h3>{html.esc(comparison.dataset or 'models')}: "
             f"{html.esc(', '.join(comparison.models))}</h3>"]
    dice_key = ('<p class="note key">Input, ground truth, then each model\'s prediction tinted '
                "on the input, captioned with its test Dice on the image.</p>")
    for heading, rows, key in (
        ("Where the models disagree most", comparison.disagree, dice_key),
        (f"Where the best model ({comparison.best}) is worst", comparison.best_worst, dice_key),
        ("Least consistent under rotation", comparison.consistency,
         '<p class="note key">Input, then per model the difference between its prediction at '
         "0° and its prediction on the turned input turned back, captioned with the "
         f"consistency Dice: {_swatch(ONLY_ZERO)}only at 0° {_swatch(ONLY_ROTATED)}only on the "
         f"turned input {_swatch(BOTH)}both (agreement); dark: outside the inscribed disc "
         "(not scored). Images that the models predict empty are left out.</p>"),
    ):
        if not rows:
            continue
        parts.append(f"<h4>{html.esc(heading)}</h4>{key}")
        parts += _tile_rows(rows)
    parts.append(html.notes(comparison.notes))
    parts.append("</article>")
    return "".join(parts)


def _gallery_html(gallery: Gallery) -> str:

    view = gallery.view
    title = f"{view.label}" + (f" · {view.dataset}" if view.dataset else "")
    if view.tta:
        title += f" · test-time {view.tta}"
    parts = [f'<article class="model"><h3>{html.esc(title)}</h3>']
    for heading, rows, key in (
        ("Least consistent under rotation", gallery.consistency, True),
        ("Lowest Dice", gallery.lowest_dice, False),
    ):
        if not rows:
            continue
        parts.append(f"<h4>{heading}</h4>")
        if key:
            parts.append(
                '<p class="note key">Difference: <span style="background:rgb'
                f'{ONLY_ZERO}"></span>only at 0° <span style="background:rgb{ONLY_ROTATED}">'
                "</span>only on the rotated input; outside the inscribed disc (not scored) "
                f"dimmed; {_swatch(BOTH)}both.</p>")
        parts += _tile_rows(rows)
    parts.append(html.notes(gallery.notes))
    parts.append("</article>")
    return "".join(parts)


def _split_hashes(study: Study) -> dict[str, str]:
    """Dataset key -> the split sha256 a bench run of it recorded in its best checkpoint."""
    hashes: dict[str, str] = {}
    for result in study.quality:
        for row in result.doc.get("results", []):
            if row["dataset"] in hashes:
                continue
            run_dir = resolve_recorded(row.get("run"), result.path)
            meta = run_meta(run_dir) if run_dir else None
            if meta is not None and meta.split_sha256:
                hashes[row["dataset"]] = str(meta.split_sha256)
    return hashes


def _provenance_section(study: Study) -> str:
    from polypseg.report.provenance import quality_provenance, run_provenance

    parts = []
    hashes = _split_hashes(study) if study.quality else {}
    for result in study.quality:
        parts.append(f"<h3>Bench result {html.esc(result.path.name)}</h3>")
        parts.append(html.definition_list(quality_provenance(result.doc, hashes)))
    shown: set[Path] = set()
    for view in study.models:
        if view.run_dir is None or view.run_dir.resolve() in shown:
            continue
        shown.add(view.run_dir.resolve())
        info = run_provenance(view.run_dir)
        config = json.dumps(info["config"], indent=2) if info["config"] else "(no config.json)"
        parts.append(
            f"<details><summary>{html.esc(view.label)}"
            f"{' · ' + html.esc(view.dataset) if view.dataset else ''}: configuration</summary>"
            f"{html.definition_list(info['items'])}<pre>{html.esc(config)}</pre></details>"
        )
    return "".join(parts)


def _findings_section(study: Study) -> str:
    from polypseg.report.findings import findings_html, load_findings

    parts = []
    for result in study.quality:
        if result.doc.get("summary"):
            parts.append(findings_html(load_findings(result.path)))
    return "".join(parts)


# -- the page ---------------------------------------------------------------------------------
def _title(study: Study) -> str:
    if study.quality:
        labels = ", ".join(str(r.doc.get("label", r.doc.get("plan"))) for r in study.quality)
        return f"polypseg bench quality: {labels}"
    names = ", ".join(dict.fromkeys(v.label for v in study.models))
    return f"polypseg study: {names}" if names else "polypseg study"


def render(study: Study, galleries: Sequence[Gallery], title: str | None = None,
           command: str | None = None, progress: Progress = _quiet,
           comparisons: Sequence[Comparison] = ()) -> str:
    """The report page of ``study`` with its computed ``galleries`` (one per model: the
    facts of loading it; pictures when no ``comparisons`` are given) and ``comparisons`` (one
    per dataset: its models side by side).

    Args:
        study: the collected inputs.
        galleries: one per model.
        title: the page title; ``None``: one made from the study.
        command: the command line, shown in the header; ``None``: none shown.
        progress: called with one line per stage.
        comparisons: one per dataset; empty: pictures per model instead.
    """
    from importlib import metadata

    title = title or _title(study)
    rows: list[dict[str, Any]] = []
    for result in study.quality:
        rows += quality_rows(result)
    for gallery in galleries:
        if gallery.view.source == "run":
            rows.append(run_row(gallery.view, gallery.facts))
    header = [f"<h1>{html.esc(title)}</h1>"]
    from polypseg.paths import portable

    inputs = ", ".join(portable(Path(p).absolute()) for p in study.inputs)
    header.append(f'<p class="meta">From {html.esc(inputs)}</p>')
    if any(r.doc.get("reduced") for r in study.quality):
        header.append('<p class="banner"><b>REDUCED plan</b>: smaller images, narrower models, '
                      "fewer epochs, seeds and images than the full protocol; the numbers "
                      "compare the variants under one small budget.</p>")
    header.append(html.notes(study.notes))
    gallery_html = "".join(_comparison_html(c) for c in comparisons) or "".join(
        _gallery_html(g) for g in galleries if g.view.run_dir is not None)
    if gallery_html:
        gallery_html = (
            '<p class="note">Computed for this report by running each model\'s best checkpoint '
            "on the named test images at its input size; the same images for every model of a "
            "dataset. Disagree most: the largest spread of test Dice across the models. Best "
            "model: the highest mean test Dice of its evaluation, among models without a "
            "stalled seed. Least consistent: the lowest consistency averaged over the models, "
            "at the swept angle where that average is lowest. Tints: the mask on the input."
            + (" For a bench result, each entry's run with the best validation Dice (the run "
               "its Dice-vs-angle curve shows)." if study.quality else "")
            + "</p>" + gallery_html
        )
    try:
        version = metadata.version("polypseg")
    except metadata.PackageNotFoundError:
        version = "?"
    footer = (f"Written {time.strftime('%Y-%m-%d %H:%M')} by polypseg {html.esc(version)}"
              + (f" · <code>{html.esc(command)}</code>" if command else "")
              + ". Self-contained: no script, nothing loaded from the network.")
    sections = [
        ("findings", "Findings", _findings_section(study)),
        ("summary", "Summary", _summary_section(rows)),
        ("comparisons", "Paired comparisons", _comparisons_section(study)),
        ("fractions", "Dice against the share of labelled images", _fractions_section(study)),
        ("counterpart", "Against another plan", _counterpart_section(study)),
        ("rotation", "Dice against rotation angle", _rotation_section(study)),
        ("training", "Training curves", _training_section(study, progress)),
        ("bench-plots", "More plots of the bench", _other_bench_plots(study)),
        ("gallery", "Gallery", gallery_html),
        ("provenance", "Configuration and provenance", _provenance_section(study)),
    ]
    return html.page(title, "".join(header), sections, footer)


def build_report(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    title: str | None = None,
    gallery: int = 3,
    device: str = "cpu",
    data: str | Path | dict[str | None, Path] | None = None,
    command: str | None = None,
    progress: Progress = _quiet,
) -> Path:
    """Write the report of ``paths`` (run folders, sweeps, bench results) to ``out``.

    ``gallery`` images per gallery row kind (0: no pictures); ``data`` overrides the dataset
    folders found (recorded, or ``../shared/data/<folder>`` beside the clone): a folder for
    every model, or ``{dataset key: folder}`` (key ``None``: the rest), see
    :func:`parse_data`. Returns ``out``.

    Args:
        paths: run folders, sweep results, bench quality results, or folders of those.
        out: the HTML file to write.
        title: the page title; ``None``: one made from the study.
        gallery: images per gallery row kind and model (0: no pictures).
        device: where the gallery's predictions run.
        data: dataset folders for the gallery (see :func:`parse_data`); ``None``: the recorded ones.
        command: the command line, shown in the header.
        progress: called with one line per stage.
    """
    from polypseg.atomic import atomic_write_text
    from polypseg.report.inputs import apply_data

    study = collect([Path(p) for p in paths])
    if data is not None:
        apply_data(study.models, data if isinstance(data, dict) else {None: Path(data)})
    import warnings

    from polypseg.report.summary import stalled_entries

    galleries, comparisons = [], []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="e2cnn")  # its basis code's own warnings
        warnings.filterwarnings("ignore", message=".*uint8.*deprecated")
        for view in study.models:
            if view.source == "run":  # the facts of its summary row
                galleries.append(build_gallery(view, 0, device))
        stalled = stalled_entries(study)
        for dataset in dict.fromkeys(v.dataset for v in study.models):
            views = [v for v in study.models if v.dataset == dataset and v.run_dir is not None]
            if views:
                progress(f"report: gallery of {dataset or 'the models'} ({len(views)} models)")
                comparisons.append(build_comparison(views, gallery, device,
                                                    stalled.get(dataset, set())))
    page = render(study, galleries, title=title, command=command, progress=progress,
                  comparisons=comparisons)
    out = Path(out)
    atomic_write_text(out, page)
    return out


def parse_data(values: Sequence[str]) -> dict[str | None, Path]:
    """``--data`` values as ``{dataset key: folder}``: ``kvasir=DIR`` for one dataset, a bare
    ``DIR`` for every model without its own. :class:`RunError` for an unknown key or a folder
    that does not exist."""
    from polypseg.errors import RunError
    from polypseg.paths import DATASET_FOLDERS, dataset_key

    found: dict[str | None, Path] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep:
            name, folder = "", value
        key = dataset_key(name) if name else None
        if name and key is None:
            raise RunError(f"--data {value}: unknown dataset {name!r}; expected KEY=DIR with KEY "
                           f"one of {', '.join(DATASET_FOLDERS)}, or a bare DIR")
        if not Path(folder).is_dir():
            raise RunError(f"--data {value}: no such folder {folder}")
        found[key] = Path(folder)
    return found


def write_quality_report(json_path: str | Path, html_path: str | Path) -> Path:
    """The report of one bench quality result, written beside it (``quality-PLAN.html``)."""
    return build_report([json_path], html_path)
