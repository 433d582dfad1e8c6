"""``polypseg demo``: the whole pipeline, offline, in a few minutes on a laptop CPU.

Trains a small plain ``unet`` and a ``p4`` U-Net of about the same parameter count on a small
subset of real data (``../shared/data/Kvasir-SEG`` or ``CVC-ClinicDB`` when found beside the
repository or the working directory, else a generated synthetic set), evaluates both on test
images, sweeps them over rotation angles on identical inputs, plots, and prints where each
file is. Everything lands in ``OUT`` (default ``runs/demo``)::

    OUT/split.json                 the split both models share
    OUT/unet/, OUT/p4/             run folders (checkpoints, metrics.csv, tb/, eval/)
    OUT/sweep/sweep.{json,csv}     Dice vs angle, per run and angle
    OUT/sweep/dice_vs_angle.{png,svg}
    OUT/training.{png,svg}         loss, val Dice and lr per epoch
    OUT/summary.json               the numbers printed at the end
    OUT/report.html                the report of both runs (``polypseg report``), one file

A second call reuses finished runs (delete ``OUT`` to retrain).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polypseg.atomic import atomic_write_json

DATASET_NAMES: tuple[str, ...] = ("Kvasir-SEG", "CVC-ClinicDB")


@dataclass
class DemoSettings:
    """What the demo trains and measures (defaults: a few minutes on 2 CPU cores)."""

    out: Path = Path("runs/demo")
    data: Path | None = None
    synthetic: bool = False
    progress: bool | None = None
    size: int = 64
    depth: int = 3
    epochs: int = 12
    batch_size: int = 4
    lr: float = 2e-3
    n_train: int = 200
    n_val: int = 24
    n_test: int = 24
    n_sweep: int = 16
    models: tuple[tuple[str, int], ...] = (("unet", 8), ("p4", 4))
    angles: list[float] = field(default_factory=lambda: [float(a) for a in range(0, 360, 15)])
    seed: int = 0
    n_synthetic: int = 160
    """Pairs generated when no real data is found (or with ``synthetic``)."""


def find_shared_data() -> Path | None:
    """``../shared/data/<dataset>`` relative to the repository or the working directory."""
    roots = [Path(__file__).resolve().parents[1], Path.cwd()]
    for root in roots:
        for name in DATASET_NAMES:
            candidate = root.parent / "shared" / "data" / name
            if (candidate / "images").is_dir() and (candidate / "masks").is_dir():
                return candidate
    return None


def _say(line: str) -> None:
    print(line, flush=True)


def _train_or_reuse(config: Any) -> Path:
    from polypseg.training import train
    from polypseg.training.state import state_path

    if state_path(config.run_dir()).is_file():
        config.resume = True
    return train(config)


def run_demo(settings: DemoSettings) -> dict[str, Any]:
    """Run the demo; return (and write to ``OUT/summary.json``) its numbers."""
    from polypseg.evaluation import evaluate_run
    from polypseg.plotting import plot_sweeps, plot_training
    from polypseg.report.build import build_report
    from polypseg.sweep import sweep_runs

    started = time.perf_counter()
    out = Path(settings.out)
    data, index, split_path = _prepare_data(settings, out)
    runs = [
        _train_model(settings, name, width, data, split_path, out)
        for name, width in settings.models
    ]
    _say("\n== evaluating on test images ==")
    evals = {
        run.name: evaluate_run(run, data, subset="test", limit=settings.n_test,
                               progress=settings.progress)
        for run in runs
    }
    _say(f"== sweeping {len(settings.angles)} angles ==")
    sweep = sweep_runs(runs, data, settings.angles, limit=settings.n_sweep, out=out / "sweep",
                       progress=settings.progress)
    figures = {
        "sweep_figure": plot_sweeps([sweep], out / "sweep" / "dice_vs_angle.png"),
        "training_figure": plot_training(runs, out / "training.png"),
    }
    _say("== writing the report ==")
    report = build_report([*runs, out / "sweep"], out / "report.html",
                          title=f"polypseg demo: {', '.join(r.name for r in runs)}")
    summary = _summary(settings, data, index.name, runs, evals, sweep, figures, report)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_json(out / "summary.json", summary)
    _print_summary(summary)
    return summary


def _prepare_data(settings: DemoSettings, out: Path) -> tuple[Path, Any, Path]:
    """``(data folder, its index, split file)``: the shared data, or a generated set; the
    split made once in ``OUT/split.json`` and reused."""
    from polypseg.data import discover, make_split
    from polypseg.training.synthetic import make_synthetic

    data = settings.data
    if data is None and not settings.synthetic:
        data = find_shared_data()
    if data is None:
        data = make_synthetic(out / "synthetic-data", n=settings.n_synthetic)
        _say(f"no shared data found: generated a synthetic polyp set in {data}")
    index = discover(data)
    split_path = out / "split.json"
    if not split_path.is_file():
        make_split(index, seed=0).save(split_path)
    _say(
        f"demo data: {data} ({index.name}, {len(index.pairs)} images; using {settings.n_train} "
        f"train, {settings.n_val} val, {settings.n_test} test ({settings.n_sweep} swept) at "
        f"{settings.size} px)"
    )
    return data, index, split_path


def _train_model(
    settings: DemoSettings, name: str, width: int, data: Path, split_path: Path, out: Path
) -> Path:
    """Train (or resume, or reuse) variant ``name`` at ``width`` in ``OUT/NAME``.

    Args:
        settings: the demo's settings (epochs, sizes, image counts).
        name: the variant.
        width: its width.
        data: the dataset folder.
        split_path: the shared split file.
        out: the demo's output folder.
    """
    from polypseg.training import TrainConfig

    _say(f"\n== training {name} (width {width}) ==")
    config = TrainConfig(
        variant=name, data=str(data), out=str(out / name), split_file=str(split_path),
        epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr,
        warmup_epochs=1.0, size=settings.size, width=width, depth=settings.depth,
        seed=settings.seed, device="cpu", limit_train=settings.n_train,
        limit_val=settings.n_val, progress=settings.progress,
    )
    return _train_or_reuse(config)


def _summary(
    settings: DemoSettings,
    data: Path,
    dataset: str,
    runs: list[Path],
    evals: dict[str, dict[str, Any]],
    sweep: dict[str, Any],
    figures: dict[str, list[Path]],
    report: Path,
) -> dict[str, Any]:
    """The numbers and files the demo prints and writes to ``summary.json`` (but its time).

    Args:
        settings: the demo's settings.
        data: the dataset folder.
        dataset: the dataset's name.
        runs: the run folders, in training order.
        evals: each run's test evaluation, by run name.
        sweep: the sweep's result.
        figures: ``sweep_figure`` and ``training_figure``: the paths each plot wrote.
        report: the HTML report.
    """
    from polypseg.sweep import angle_summary

    summary: dict[str, Any] = {
        "data": str(data),
        "dataset": dataset,
        "size": settings.size,
        "epochs": settings.epochs,
        "images": {
            "train": settings.n_train, "val": settings.n_val, "test": settings.n_test,
            "sweep": settings.n_sweep,
        },
        "models": {},
        "files": {
            "sweep_json": sweep["files"]["json"],
            "sweep_csv": sweep["files"]["csv"],
            "sweep_figure": [str(p) for p in figures["sweep_figure"]],
            "training_figure": [str(p) for p in figures["training_figure"]],
            "runs": [str(r) for r in runs],
            "evaluations": [e["files"]["json"] for e in evals.values()],
            "report": str(report),
        },
    }
    for run in sweep["runs"]:
        result = evals[run["name"]]
        summary["models"][run["name"]] = {
            "variant": run["variant"],
            "params": run["params"],
            "test_dice_mean": result["summary"]["dice"]["mean"],
            "test_dice_std": result["summary"]["dice"]["std"],
            "consistency_45": angle_summary(sweep, run["name"], 45.0, "consistency")["mean"],
            "consistency_90": angle_summary(sweep, run["name"], 90.0, "consistency")["mean"],
            "accuracy_0": angle_summary(sweep, run["name"], 0.0, "accuracy")["mean"],
            "accuracy_45": angle_summary(sweep, run["name"], 45.0, "accuracy")["mean"],
        }
    return summary


def _print_summary(summary: dict[str, Any]) -> None:
    _say(f"\n== demo results ({summary['dataset']}, {summary['size']} px, "
         f"{summary['epochs']} epochs) ==")
    _say(f"{'model':<8} {'params':>8}  {'test Dice':>15}  {'cons@45':>8} {'cons@90':>8}  "
         f"{'acc@0':>7} {'acc@45':>7}")
    for name, m in summary["models"].items():
        _say(
            f"{name:<8} {m['params']:>8,}  {m['test_dice_mean']:.3f} ± {m['test_dice_std']:.3f}  "
            f"{m['consistency_45']:>8.4f} {m['consistency_90']:>8.4f}  "
            f"{m['accuracy_0']:>7.3f} {m['accuracy_45']:>7.3f}"
        )
    files = summary["files"]
    _say("\nfiles:")
    for run in files["runs"]:
        _say(f"  run folder        {run}")
    for path in files["evaluations"]:
        _say(f"  evaluation        {path}")
    _say(f"  sweep             {files['sweep_json']} (+ .csv)")
    _say(f"  Dice vs angle     {files['sweep_figure'][0]} (+ .svg)")
    _say(f"  training curves   {files['training_figure'][0]} (+ .svg)")
    _say(f"  report            {files['report']}  (open it in a browser)")
    _say(f"done in {summary['seconds']:.0f} s")
