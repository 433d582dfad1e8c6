"""Collect a plan's finished runs into ``quality-PLAN.json``/``.md`` and Dice-vs-angle plots.

Reads only files the library wrote (``evaluate_run``'s and ``sweep_runs``' JSON, the best
checkpoint's metadata) and this runner's ``bench/train.json``; runs that are not finished are
left out and counted. Per run and entry:

* ``metrics``: the test-set means over images of Dice, IoU, precision, recall, HD95;
* ``sweep``: ``accuracy_mean`` (mean over angles of the per-angle mean accuracy Dice),
  ``accuracy_min`` (the worst angle), ``accuracy_0`` (the upright input) and
  ``accuracy_drop`` (``accuracy_0`` minus the mean over the other angles: what rotating
  the input costs on average), ``consistency_off90`` (mean consistency over the angles
  that are not multiples of 90 degrees), ``accuracy_off90``;
* ``val_dice``: the best checkpoint's validation Dice, which picks the run plotted per entry
  (selection on validation, never on test);
* ``convergence``: whether the run's validation Dice levelled off (:mod:`.stats`).

With ``cross_dataset`` the runs' tests on the other datasets go to ``cross`` (per run) and
``cross_summary``; with ``baselines`` every other entry is compared with each baseline on each
dataset by a paired bootstrap of per-image Dice over images and seeds (``comparisons``).
Paths in the document are relative to the plan's root.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from polypseg.atomic import atomic_write_report
from polypseg.bench.fractions import fraction_curves, plot_fraction_curves
from polypseg.bench.plan import Plan
from polypseg.bench.report import mean_std, quality_markdown, summarize
from polypseg.bench.runs import Evaluation, RunSpec, eval_file, stopped_too_soon, sweep_file

KIND = "polypseg-quality/1"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def sweep_summary(sweep: dict[str, Any]) -> dict[str, float]:
    """Angle-level summaries of a one-run sweep result (see the module docstring)."""
    per_angle = sweep["runs"][0]["per_angle"]

    def means(metric: str, keep: Callable[[float], bool]) -> list[float]:
        return [p[metric]["mean"] for p in per_angle
                if keep(p["angle"]) and p[metric]["mean"] is not None]

    def off90(angle: float) -> bool:
        return not math.isclose(angle % 90, 0, abs_tol=1e-9)

    out: dict[str, float] = {}
    accuracy = means("accuracy", lambda _a: True)
    if accuracy:
        out["accuracy_mean"] = sum(accuracy) / len(accuracy)
        out["accuracy_min"] = min(accuracy)
    def upright(angle: float) -> bool:
        return math.isclose(angle % 360, 0, abs_tol=1e-9)

    at_zero = means("accuracy", upright)
    rotated = means("accuracy", lambda a: not upright(a))
    if at_zero and rotated:
        out["accuracy_0"] = at_zero[0]
        out["accuracy_drop"] = at_zero[0] - sum(rotated) / len(rotated)
    for metric in ("consistency", "accuracy"):
        values = means(metric, off90)
        if values:
            out[f"{metric}_off90"] = sum(values) / len(values)
    return out


def _val_dice(run_dir: Path) -> float | None:
    meta = _read(run_dir / "checkpoints" / "best.json") or {}
    metrics = meta.get("metrics") or {}
    for key in ("val_dice", "dice"):
        value = metrics.get(key)
        if isinstance(value, (int, float)):
            return float(value)
    return None


def per_image_dice(spec: RunSpec, evaluation: Evaluation) -> dict[str, float] | None:
    """``stem -> Dice`` of one evaluation of a run (``None`` while it is unfinished)."""
    evaluated = _read(eval_file(spec, evaluation))
    if evaluated is None:
        return None
    return {str(row["stem"]): float(row["dice"]) for row in evaluated.get("images", [])}


def cross_result(spec: RunSpec, evaluation: Evaluation) -> dict[str, Any] | None:
    """One row of ``cross``: a run tested on another dataset, or ``None`` if unfinished."""
    evaluated = _read(eval_file(spec, evaluation))
    if evaluated is None:
        return None
    return {
        "entry": evaluation.entry,
        "trained_on": spec.dataset,
        "dataset": evaluation.dataset,
        "train_fraction": spec.train_fraction,
        "seed": spec.seed,
        "tta": evaluation.tta,
        "run": spec.run_dir,
        "metrics": {k: v.get("mean") for k, v in evaluated["summary"].items()},
        "n_test_images": evaluated.get("n_images"),
    }


def cross_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean/std/n over seeds of each (entry, trained_on, dataset) of the ``cross`` rows."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["entry"], row["trained_on"], row["dataset"]), []).append(row)
    out = []
    for (entry, trained_on, dataset), runs in groups.items():
        metrics = {}
        for key in sorted({k for r in runs for k in r["metrics"]}):
            mean, std, n = mean_std(r["metrics"].get(key) for r in runs)
            metrics[key] = {"mean": mean, "std": std, "n": n}
        out.append({"entry": entry, "trained_on": trained_on, "dataset": dataset,
                    "n": len(runs), "metrics": metrics})
    return out


def test_scores(specs: list[RunSpec], cross: bool = False
                ) -> dict[tuple[str, ...], list[dict[str, float]]]:
    """``[stem -> Dice, one per finished run]`` of the runs' evaluations on their own test split,
    keyed ``(dataset, entry)`` (an evaluation-only entry, ``unet+tta``, under its own name), or
    with ``cross`` on another dataset's, keyed ``(trained on, tested on, entry)``.

    Args:
        specs: the runs.
        cross: the evaluations on other datasets' test splits instead of the own one.
    """
    scores: dict[tuple[str, ...], list[dict[str, float]]] = {}
    for spec in specs:
        for evaluation in spec.evaluations:
            if evaluation.cross != cross:
                continue
            dice = per_image_dice(spec, evaluation)
            if dice:
                key = ((spec.dataset, str(evaluation.dataset), evaluation.entry) if cross
                       else (spec.dataset, evaluation.entry))
                scores.setdefault(key, []).append(dice)
    return scores


def compare_to_baselines(plan: Plan, specs: list[RunSpec]) -> list[dict[str, Any]]:
    """Every entry against every baseline of the plan, per dataset: the paired bootstrap of
    per-image test Dice over images and seeds (:func:`.stats.paired_bootstrap`)."""
    from polypseg.bench.stats import paired_bootstrap

    scores = test_scores(specs)
    rows = []
    for dataset in plan.datasets:
        for baseline in plan.baselines:
            base = scores.get((dataset.key, baseline))
            for entry in plan.entries:
                runs = scores.get((dataset.key, entry.name))
                # a baseline is compared only with the baselines listed before it (unet+rotaug
                # and unet-wide with unet: does augmentation, or width, help?)
                if entry.name in plan.baselines and (
                        plan.baselines.index(baseline) >= plan.baselines.index(entry.name)):
                    continue
                if not base or not runs:
                    continue
                result = paired_bootstrap(runs, base)
                rows.append({"dataset": dataset.key, "entry": entry.name,
                             "baseline": baseline, **result})
    return rows


def run_result(spec: RunSpec, evaluation: Evaluation) -> dict[str, Any] | None:
    """One row of ``results``: an evaluation of a finished run, or ``None`` if unfinished."""
    from polypseg.training.logs import training_seconds  # polypseg.training loads torch

    evaluated = _read(eval_file(spec, evaluation))
    swept = _read(sweep_file(spec, evaluation))
    trained = _read(spec.bench_dir / "train.json")
    if evaluated is None or swept is None or trained is None:
        return None
    own = evaluation.entry == spec.entry
    return {
        "entry": evaluation.entry,
        "dataset": spec.dataset,
        "train_fraction": spec.train_fraction,
        "seed": spec.seed,
        "run": spec.run_dir,
        "trained_as": spec.entry,
        "tta": evaluation.tta,
        "metrics": {k: v.get("mean") for k, v in evaluated["summary"].items()},
        "n_test_images": evaluated.get("n_images"),
        "hd95_excluded": evaluated["summary"].get("hd95", {}).get("n_excluded"),
        "sweep": sweep_summary(swept),
        "sweep_images": swept.get("n_images"),
        "sweep_file": str(sweep_file(spec, evaluation)),
        "val_dice": _val_dice(Path(spec.run_dir)),
        "epoch": evaluated.get("epoch"),
        # an evaluation-only entry trained nothing: its training time is its source's; a
        # resumed run's time is summed over its sittings (train.json times the last one)
        "train_seconds": (training_seconds(spec.run_dir) or trained.get("seconds"))
        if own else None,
        "device": (trained.get("hardware") or {}).get("device_name"),
        "negatives": negatives_metrics(evaluated),
    }


def negatives_metrics(evaluated: dict[str, Any]) -> dict[str, Any] | None:
    """False-positive rate and mean foreground on the test negatives, and the frame-level
    sensitivity/specificity, of an evaluation (``None`` for one made before they existed:
    :mod:`polypseg.negatives_eval`)."""
    negatives, frame = evaluated.get("negatives"), evaluated.get("frame_level")
    if not negatives or not frame:
        return None
    return {
        "false_positive_rate": negatives.get("false_positive_rate"),
        "mean_pred_fraction": negatives.get("mean_pred_fraction"),
        "n_negatives": negatives.get("n"),
        "frame_sensitivity": frame.get("sensitivity"),
        "frame_specificity": frame.get("specificity"),
        "decision_source": (frame.get("decision") or {}).get("source"),
    }


def _negatives_section(plan: Plan, specs: list[RunSpec],
                       results: list[dict[str, Any]]) -> dict[str, Any]:
    """False positives and frame-level rates per entry, and with against without negatives
    (:mod:`polypseg.bench.negatives`)."""
    from polypseg.bench import negatives

    return {"summary": negatives.summary(results),
            "comparisons": negatives.comparisons(plan, specs)}


def best_runs(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (entry, dataset) the run with the best validation Dice (test Dice if none)."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in results:
        key = (row["entry"], row["dataset"])

        def score(r: dict[str, Any]) -> float:
            value = r["val_dice"] if r["val_dice"] is not None else r["metrics"].get("dice")
            return -math.inf if value is None else value

        if key not in best or score(row) > score(best[key]):
            best[key] = row
    return best


def plot_best(plan: Plan, results: list[dict[str, Any]], out: Path) -> list[Path]:
    """Dice-vs-angle plot per dataset: the best run of every entry (``plotting.plot_sweeps``)."""
    from polypseg.plotting import load_sweep, plot_sweeps

    written = []
    best = best_runs(results)
    # in the plan's order; every entry its own colour, and the later entries of one variant
    # (unet+rotaug, unet+tta, unet-wide) another line style too (plotting.curve_styles)
    for dataset in plan.datasets:
        sweeps = []
        for entry in plan.entries:
            row = best.get((entry.name, dataset.key))
            if row is None:
                continue
            sweep = load_sweep(plan.root / row["sweep_file"])
            for run in sweep["runs"]:
                run["name"] = entry.name  # the legend names the entry, not the run folder
            sweeps.append(sweep)
        if not sweeps:
            continue
        first = sweeps[0]
        title = (f"{dataset.label}, plan {plan.label}: best run per entry (validation Dice), "
                 f"{first['n_images']} test images, {first['size']} px")
        written += plot_sweeps(sweeps, out / f"sweep-{plan.name}-{dataset.key}", title=title)
    return written


def _hardware(results: list[dict[str, Any]], specs: list[RunSpec]) -> dict[str, Any]:
    from polypseg.bench.hardware import hardware_info

    for spec in specs:
        trained = _read(spec.bench_dir / "train.json")
        if trained and trained.get("hardware"):
            return trained["hardware"]
    return hardware_info("cpu")


def _trained_params(specs: list[RunSpec], entry: str) -> int | None:
    """The parameter count the finished runs of ``entry`` recorded in their checkpoints, when
    they agree: what was trained, even where today's zoo builds the variant otherwise (a
    default added since, such as ``head_norm``); ``None`` when no run recorded one."""
    counts = set()
    for spec in specs:
        meta = _read(Path(spec.run_dir) / "checkpoints" / "best.json") if spec.entry == entry \
            else None
        if meta is not None and isinstance(meta.get("params"), int):
            counts.add(meta["params"])
    return counts.pop() if len(counts) == 1 else None


def write_results(
    plan: Plan,
    specs: list[RunSpec],
    entries: dict[str, dict[str, Any]],
    datasets: dict[str, dict[str, Any]],
    out: Path,
    command: str = "",
    progress: Callable[[str], None] = lambda _m: None,
) -> list[Path]:
    """Write ``quality-PLAN.json``, ``quality-PLAN.md`` and the plots into ``out``.

    Args:
        plan: the plan.
        specs: every run of the plan (:func:`polypseg.bench.runs.plan_runs`).
        entries: each training entry's width, parameters and MACs, by name.
        datasets: each dataset's record (its split file made relative here), by key.
        out: the folder of the tables and plots.
        command: the command line, recorded in the document.
        progress: told how many evaluations are unfinished.
    """
    results, cross, missing = _result_rows(plan, specs)
    _sort_rows(plan, results, cross)
    doc = {
        "kind": KIND,
        "plan": plan.name,
        "label": plan.label,
        "reduced": plan.reduced,
        "description": plan.description,
        "date": time.strftime("%Y-%m-%d"),
        "command": command,
        "plan_file": str(plan.source_file) if plan.source_file else None,
        "hardware": _hardware(results, specs),
        "settings": _settings(plan),
        "datasets": {
            key: {k: plan.relative(v) if k.endswith("split_file") else v for k, v in info.items()}
            for key, info in datasets.items()
        },
        "entries": _entry_rows(plan, specs, entries),
        "missing": missing,
        "summary": summarize(results),
        "comparisons": compare_to_baselines(plan, specs) if plan.baselines else [],
        "cross_summary": cross_summary(cross),
        "negatives": _negatives_section(plan, specs, results),
        "results": results,
        "cross": cross,
    }
    doc["fractions"] = fraction_curves(plan, specs)
    if plan.compare_with is not None:
        from polypseg.bench.counterpart import compare_plans

        doc["counterpart"] = compare_plans(plan, specs)
    written = _write_document(plan, doc, results, Path(out))
    if missing:
        progress(f"{len(missing)} evaluations unfinished, left out: {', '.join(missing[:5])}")
    return written


def _result_rows(
    plan: Plan, specs: list[RunSpec]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """``(results, cross, missing)``: a row per finished evaluation on the own test split
    (with its convergence) and on another dataset's, and the key of every unfinished one."""
    from polypseg.bench.stats import convergence
    from polypseg.training.logs import read_metrics_csv

    results, cross, missing = [], [], []
    patience = int(plan.train_options.get("patience", 0) or 0)
    for spec in specs:
        if stopped_too_soon(spec) is not None:  # its files are of a rule the plan dropped
            missing.append(f"{spec.key} (stopped before min_epochs)")
            continue
        for evaluation in spec.evaluations:
            row = (cross_result if evaluation.cross else run_result)(spec, evaluation)
            if row is None:
                where = f"@{evaluation.dataset}" if evaluation.cross else ""
                missing.append(f"{spec.key}:{evaluation.entry}{where}")
                continue
            if not evaluation.cross:
                metrics = Path(spec.run_dir) / "metrics.csv"
                row["convergence"] = convergence(
                    read_metrics_csv(metrics) if metrics.is_file() else [],
                    patience=patience, epochs=int(spec.train.get("epochs", plan.epochs)))
            for key in ("run", "sweep_file"):
                if key in row:
                    row[key] = plan.relative(row[key])
            (cross if evaluation.cross else results).append(row)
    return results, cross, missing


def _sort_rows(plan: Plan, results: list[dict[str, Any]], cross: list[dict[str, Any]]) -> None:
    """Sort both lists in place in the plan's order (datasets, entries, seeds), not the order
    the runs finished in."""
    order = {
        "entry": {e.name: i for i, e in enumerate(plan.entries)},
        "dataset": {d.key: i for i, d in enumerate(plan.datasets)},
        "seed": {s: i for i, s in enumerate(plan.seeds)},
    }
    results.sort(key=lambda r: tuple(order[k].get(r[k], len(order[k]))
                                     for k in ("dataset", "entry", "seed")))
    cross.sort(key=lambda r: (order["dataset"].get(r["trained_on"], 0),
                              order["entry"].get(r["entry"], 0), order["seed"].get(r["seed"], 0)))


def _entry_rows(
    plan: Plan, specs: list[RunSpec], entries: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per entry of the plan: its variant, width, parameters (as trained), MACs and
    options."""
    rows = []
    for entry in plan.entries:
        source = entries.get(entry.source or entry.name, {})
        trained = _trained_params(specs, entry.source or entry.name)
        rows.append({
            "name": entry.name,
            "variant": entry.variant or plan.entry(entry.source).variant,
            "width": source.get("width"),
            "params": trained if trained is not None else source.get("params"),
            "macs_256": source.get("macs_256"),
            "match": entry.match,
            "rot_aug": entry.rot_aug,
            "negatives": entry.negatives,
            "tta": entry.tta,
            "source": entry.source,
            "note": entry.note,
        })
    return rows


def _settings(plan: Plan) -> dict[str, Any]:
    """The plan's settings as the document records them."""
    return {
        "size": plan.size, "depth": plan.depth, "epochs": plan.epochs,
        "batch_size": plan.batch_size, "lr": plan.lr, "seeds": list(plan.seeds),
        "angles": plan.angles_text, "n_angles": len(plan.angles),
        "limit_train": plan.limit_train, "limit_val": plan.limit_val,
        "limit_test": plan.limit_test, "sweep_limit": plan.sweep_limit,
        "split_seed": plan.split_seed, "train_options": plan.train_options,
        "cross_dataset": plan.cross_dataset, "baselines": list(plan.baselines),
    }


def _write_document(
    plan: Plan, doc: dict[str, Any], results: list[dict[str, Any]], out: Path
) -> list[Path]:
    """Draw the plots (their names go into ``doc["plots"]``), then write the JSON and the
    markdown; return every path written."""
    plots = plot_best(plan, results, out) if results else []
    plots += plot_fraction_curves(doc, plan, out)
    cost_doc = _read(out / f"cost-{plan.name}.json")
    if results:
        from polypseg.bench.pareto import plot_pareto

        plots += plot_pareto(doc, cost_doc, out)
    doc["plots"] = [p.name for p in plots]
    stem = out / f"quality-{plan.name}"
    return [*atomic_write_report(stem, doc, quality_markdown(doc)), *plots]
