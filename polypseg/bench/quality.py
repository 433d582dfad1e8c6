"""Quality benchmark runner: a plan's runs trained, evaluated and swept, resumably, in parallel.

Layout under the plan's ``runs`` folder::

    splits/DATASET.json                 split file shared by every run of the dataset
    DATASET/ENTRY/seedS/                a run folder of polypseg.training.train
        checkpoints/best.*, metrics.csv, config.json      (written by train)
        bench/spec.json                 what this runner asked for
        bench/train.json                completion marker: training finished, its wall time
        bench/ENTRY/test[-tta-rot90].json   evaluate_run on the test split (one per entry)
        bench/ENTRY/sweep.json          sweep_runs over the plan's angles (one per entry)

An evaluation-only entry (``unet+tta``: ``from: unet, tta: rot90``) adds its own
``bench/ENTRY/`` files to the runs of its source entry and trains nothing.

A stage whose file exists is never redone, so a second invocation of a finished plan trains
nothing. A run folder with training output but no ``train.json`` was interrupted: it is
resumed from its last checkpoint with ``resume=True`` and is an error otherwise (nothing is
overwritten). With ``jobs > 1`` runs execute as subprocesses
(``python -m polypseg.bench.quality SPEC.json``), each with ``cores // jobs`` torch threads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from polypseg.atomic import atomic_write_json
from polypseg.bench.plan import EntrySpec, Plan
from polypseg.errors import PolypsegError, RunError

Progress = Callable[[str], None]
THREADS_ENV = "POLYPSEG_BENCH_THREADS"


def _quiet(_message: str) -> None:
    pass


# -- runs of a plan -------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a trained run: under the name of ``entry``, with ``tta``."""

    entry: str
    tta: str | None = None


@dataclass
class RunSpec:
    """One training run of a plan and the evaluations to make of it (JSON round-trip)."""

    entry: str
    dataset: str
    seed: int
    run_dir: str
    data_dir: str
    split_file: str
    train: dict[str, Any]
    evaluations: list[Evaluation]
    angles: list[float]
    sweep_split_file: str | None = None

    @property
    def key(self) -> str:
        """``DATASET/ENTRY/seedS``: the run's name in messages and results."""
        return f"{self.dataset}/{self.entry}/seed{self.seed}"

    @property
    def bench_dir(self) -> Path:
        """The folder of this runner's own files inside the run folder."""
        return Path(self.run_dir) / "bench"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for a worker subprocess)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["evaluations"] = [Evaluation(**e) for e in data["evaluations"]]
        return cls(**data)


def resolve_entries(plan: Plan) -> dict[str, dict[str, Any]]:
    """Width, parameters and MACs at 256 px of every training entry.

    A ``match`` entry gets ``zoo.match_params(variant, params of the matched entry)``.
    """
    import zoo

    depth_kw = {} if plan.depth is None else {"depth": plan.depth}
    resolved: dict[str, dict[str, Any]] = {}

    def describe(entry: EntrySpec, width: int) -> dict[str, Any]:
        kw = {"depth": entry.depth} if entry.depth is not None else depth_kw
        model = zoo.create(entry.variant, in_channels=3, out_channels=1, width=width, **kw)
        info = zoo.describe(model, (256, 256))
        return {"width": width, "params": int(info["params"]), "macs_256": int(info["macs"])}

    for entry in plan.training_entries():
        if entry.width is not None:
            resolved[entry.name] = describe(entry, entry.width)
    for entry in plan.training_entries():
        if entry.match is not None:
            target = resolved[entry.match]["params"]
            kw = {"depth": entry.depth} if entry.depth is not None else depth_kw
            width = int(zoo.match_params(entry.variant, target, **kw))
            resolved[entry.name] = describe(entry, width)
    return resolved


def split_path(plan: Plan, dataset: str) -> Path:
    """The split file every run of ``dataset`` shares."""
    return plan.runs / "splits" / f"{dataset}.json"


def sweep_split_path(plan: Plan, dataset: str) -> Path:
    """The split file of the sweeps: the runs' split, its test set cut to ``sweep_limit``."""
    if plan.sweep_limit is None:
        return split_path(plan, dataset)
    return plan.runs / "splits" / f"{dataset}-sweep{plan.sweep_limit}.json"


def plan_runs(plan: Plan, widths: dict[str, dict[str, Any]] | None = None) -> list[RunSpec]:
    """Every training run of the plan (dataset x training entry x seed), in plan order."""
    widths = widths if widths is not None else resolve_entries(plan)
    runs = []
    for dataset in plan.datasets:
        for entry in plan.training_entries():
            evaluations = [Evaluation(entry.name, entry.tta)] + [
                Evaluation(e.name, e.tta) for e in plan.entries if e.source == entry.name
            ]
            for seed in plan.seeds:
                run_dir = plan.runs / dataset.key / entry.name / f"seed{seed}"
                train = {
                    "model": entry.variant,
                    "data": str(dataset.data_dir),
                    "out": str(run_dir),
                    "split_file": str(split_path(plan, dataset.key)),
                    "epochs": plan.epochs,
                    "batch_size": plan.batch_size,
                    "lr": plan.lr,
                    "size": plan.size,
                    "width": widths[entry.name]["width"],
                    "depth": entry.depth if entry.depth is not None else plan.depth,
                    "seed": seed,
                    "rot_aug": entry.rot_aug,
                    "workers": plan.workers,
                    **plan.train_options,
                }
                runs.append(RunSpec(
                    entry=entry.name, dataset=dataset.key, seed=seed, run_dir=str(run_dir),
                    data_dir=str(dataset.data_dir), split_file=train["split_file"], train=train,
                    evaluations=evaluations, angles=list(plan.angles),
                    sweep_split_file=str(sweep_split_path(plan, dataset.key)),
                ))
    return runs


# -- splits ---------------------------------------------------------------------------------
def prepare_splits(plan: Plan, progress: Progress = _quiet) -> dict[str, dict[str, Any]]:
    """Write (once) each dataset's split file, subsampled per ``limit_train``/``limit_val``/
    ``limit_test``, and the sweeps' split file (test set cut to ``sweep_limit``).

    The benchmark split (``make_split``, seed ``split_seed``) is subsampled with a fixed seed
    so that every run and every evaluation of the plan sees the same images; a seeded random
    subset, not the first N, since ClinicDB's file order is by video sequence. Returns per
    dataset the label, split files, rule and image counts.
    """
    from polypseg.data import discover, load_split, make_split

    info = {}
    for dataset in plan.datasets:
        path = split_path(plan, dataset.key)
        if path.is_file():
            split = load_split(path)
        else:
            split = make_split(discover(dataset.data_dir), seed=plan.split_seed)
            limits = {"train": plan.limit_train, "val": plan.limit_val, "test": plan.limit_test}
            split = subsample_split(split, limits, plan.split_seed)
            split.save(path)
            progress(f"split {dataset.key}: {split.counts()} -> {path}")
        sweep_path = sweep_split_path(plan, dataset.key)
        if not sweep_path.is_file():
            subsample_split(split, {"test": plan.sweep_limit}, plan.split_seed).save(sweep_path)
        info[dataset.key] = {"label": dataset.label, "split_file": str(path),
                             "sweep_split_file": str(sweep_path), "rule": split.rule,
                             "counts": split.counts()}
    return info


def subsample_split(split: Any, limits: dict[str, int | None], seed: int) -> Any:
    """A copy of ``split`` keeping a seeded random ``limits[SET]`` images of each set
    (``train``, ``val``, ``test``; the whole set where the limit is ``None``)."""
    import dataclasses
    import random

    if all(v is None for v in limits.values()):
        return split
    rng = random.Random(f"polypseg-bench-{seed}")
    sets = {}
    notes = []
    for name, items in split.sets.items():
        limit = limits.get(name)
        if limit is not None and limit < len(items):
            items = sorted(rng.sample(list(items), limit))
            notes.append(f"{name} {limit}")
        sets[name] = list(items)
    rule = split.rule + ("; subsampled (seeded): " + ", ".join(notes) if notes else "")
    return dataclasses.replace(split, sets=sets, rule=rule, source=None)


# -- one run: train, evaluate, sweep --------------------------------------------------------
def eval_file(spec: RunSpec, evaluation: Evaluation) -> Path:
    """Where ``evaluate_run`` writes the test evaluation of ``evaluation`` on this run."""
    from polypseg.evaluation import result_stem

    return spec.bench_dir / evaluation.entry / f"{result_stem('test', evaluation.tta)}.json"


def sweep_file(spec: RunSpec, evaluation: Evaluation) -> Path:
    """Where ``sweep_runs`` writes the sweep of ``evaluation`` on this run."""
    return spec.bench_dir / evaluation.entry / "sweep.json"


def is_complete(spec: RunSpec) -> bool:
    """Whether every stage of ``spec`` has its file (training marker, evals, sweeps)."""
    needed = [spec.bench_dir / "train.json"]
    for evaluation in spec.evaluations:
        needed += [eval_file(spec, evaluation), sweep_file(spec, evaluation)]
    return all(p.is_file() for p in needed)


def resolve_device(device: str | None) -> str:
    """``cuda`` when available and not told otherwise, else ``cpu``."""
    import torch

    if device and device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _train(spec: RunSpec, resume: bool, device: str, progress: Progress) -> None:
    from polypseg.bench.hardware import hardware_info
    from polypseg.training import TrainConfig, train
    from polypseg.training.state import state_path

    run_dir = Path(spec.run_dir)
    marker = spec.bench_dir / "train.json"
    if marker.is_file():
        return
    partial = state_path(run_dir).is_file()
    if partial and not resume:
        raise RunError(
            f"run {spec.key} in {run_dir} was interrupted (a resume state but no "
            "bench/train.json); rerun with --resume to continue it, or delete the folder"
        )
    config = TrainConfig(**dict(spec.train, quiet=True, resume=partial, device=device))
    progress(f"{spec.key}: training{' (resumed)' if partial else ''}")
    start = time.perf_counter()
    train(config.validate())
    atomic_write_json(marker, {
        "seconds": time.perf_counter() - start,
        "resumed": partial,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "hardware": hardware_info(device),
    })


def _evaluate(spec: RunSpec, evaluation: Evaluation, device: str, progress: Progress) -> None:
    from polypseg.evaluation import evaluate_run

    if eval_file(spec, evaluation).is_file():
        return
    progress(f"{spec.key}: evaluating {evaluation.entry} on the test split")
    evaluate_run(spec.run_dir, spec.data_dir, subset="test", split_file=spec.split_file,
                 tta=evaluation.tta, out=eval_file(spec, evaluation).parent, device=device)


def _sweep(spec: RunSpec, evaluation: Evaluation, device: str, progress: Progress) -> None:
    from polypseg.sweep import sweep_runs

    if sweep_file(spec, evaluation).is_file():
        return
    progress(f"{spec.key}: sweeping {evaluation.entry} over {len(spec.angles)} angles")
    sweep_runs([spec.run_dir], spec.data_dir, spec.angles, subset="test",
               split_file=spec.sweep_split_file or spec.split_file, tta=evaluation.tta,
               out=sweep_file(spec, evaluation).parent, device=device)


def execute(spec: RunSpec, resume: bool = False, device: str | None = None,
            progress: Progress = _quiet) -> None:
    """Bring one run to completion: train (or resume), then every evaluation and sweep."""
    used = resolve_device(device)
    spec.bench_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(spec.bench_dir / "spec.json", spec.to_dict())
    _train(spec, resume, used, progress)
    for evaluation in spec.evaluations:
        _evaluate(spec, evaluation, used, progress)
        _sweep(spec, evaluation, used, progress)


# -- many runs ------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What :func:`run_quality` did: runs trained, reused and failed, and files written."""

    trained: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)


def _run_subprocess(spec: RunSpec, resume: bool, device: str | None, threads: int) -> str | None:
    """Run one spec in a worker subprocess; return an error message or ``None``."""
    spec_file = spec.bench_dir / "spec.json"
    spec.bench_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(spec_file, spec.to_dict())
    command = [sys.executable, "-m", "polypseg.bench.quality", str(spec_file)]
    if resume:
        command.append("--resume")
    if device:
        command += ["--device", device]
    env = dict(os.environ, **{THREADS_ENV: str(threads), "OMP_NUM_THREADS": str(threads)})
    with open(spec.bench_dir / "worker.log", "a", encoding="utf-8") as log:
        proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                              check=False)
    if proc.returncode == 0:
        return None
    tail = (spec.bench_dir / "worker.log").read_text(errors="replace").strip().splitlines()
    return f"worker exited {proc.returncode}: {tail[-1] if tail else ''} (see worker.log)"


def _device_per_worker(device: str | None) -> Callable[[], str | None]:
    """``pick()`` for :func:`run_all`'s worker threads: the device of the calling worker's jobs.

    When ``device`` asks for CUDA without an index (``None``, ``auto``, ``cuda``) and torch sees
    G > 1 GPUs, each worker thread takes its own GPU, round robin (``cuda:0``, ``cuda:1``, ...)
    and keeps it for all its jobs, so ``--jobs N`` runs at most ceil(N/G) jobs on one GPU at a
    time. Otherwise every job gets ``device`` as given (``cpu``, ``cuda:K``, one GPU).
    """
    import itertools
    import threading

    import torch

    wants_any_gpu = device in (None, "auto", "cuda") and torch.cuda.is_available()
    count = torch.cuda.device_count() if wants_any_gpu else 0
    if count < 2:
        return lambda: device
    slots, worker = itertools.count(), threading.local()

    def pick() -> str:
        if not hasattr(worker, "device"):
            worker.device = f"cuda:{next(slots) % count}"
        return worker.device

    return pick


def _finished(progress: Progress, key: str, error: str | None) -> None:
    progress(f"{key}: failed: {error}" if error else f"{key}: done")


def _execute_logged(spec: RunSpec, resume: bool, device: str | None,
                    progress: Progress) -> str | None:
    """:func:`execute` in this process; an error becomes a message (traceback to a log)."""
    import traceback

    try:
        execute(spec, resume, device, progress)
    except PolypsegError as err:
        return str(err)
    except Exception as err:  # a bug in one run must not stop the other runs of a plan
        log = spec.bench_dir / "error.log"
        log.write_text(traceback.format_exc(), encoding="utf-8")
        return f"{type(err).__name__}: {err} (traceback in {log})"
    return None


def run_all(specs: list[RunSpec], jobs: int, resume: bool, device: str | None,
            progress: Progress = _quiet) -> dict[str, str | None]:
    """Execute ``specs``: in this process when ``jobs == 1``, else ``jobs`` subprocesses.

    Returns each run's error message (``None`` when it finished).
    """
    errors: dict[str, str | None] = {}
    if jobs <= 1:
        for spec in specs:
            errors[spec.key] = _execute_logged(spec, resume, device, progress)
            _finished(progress, spec.key, errors[spec.key])
        return errors
    threads = max(1, (os.cpu_count() or 1) // jobs)
    worker_device = _device_per_worker(device)

    def one(spec: RunSpec) -> None:
        progress(f"{spec.key}: started (subprocess, {threads} threads)")
        errors[spec.key] = _run_subprocess(spec, resume, worker_device(), threads)
        _finished(progress, spec.key, errors[spec.key])

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, specs))
    return errors


def run_quality(
    plan: Plan,
    *,
    jobs: int = 1,
    out: Path | None = None,
    resume: bool = False,
    device: str | None = None,
    command: str = "",
    progress: Progress = _quiet,
) -> Outcome:
    """Run every unfinished run of ``plan``, then collect, tabulate and plot all of them."""
    from polypseg.bench.collect import write_results

    datasets = prepare_splits(plan, progress)
    entries = resolve_entries(plan)
    specs = plan_runs(plan, entries)
    outcome = Outcome()
    pending = []
    for spec in specs:
        (outcome.reused if is_complete(spec) else pending).append(spec)
    outcome.reused = [s.key for s in outcome.reused]
    progress(f"plan {plan.label}: {len(specs)} runs, {len(outcome.reused)} finished, "
             f"{len(pending)} to do, jobs {jobs}")
    errors = run_all(pending, jobs, resume, device, progress)
    for spec in pending:
        message = errors.get(spec.key)
        if message:
            outcome.failed[spec.key] = message
        else:
            outcome.trained.append(spec.key)
    outcome.written = write_results(plan, specs, entries, datasets, out or plan.out, command,
                                    progress)
    return outcome


def main(argv: list[str]) -> int:
    """Worker entry point: ``python -m polypseg.bench.quality SPEC.json [--resume]
    [--device D]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="polypseg.bench.quality")
    parser.add_argument("spec")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    threads = os.environ.get(THREADS_ENV)
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    spec = RunSpec.from_dict(json.loads(Path(args.spec).read_text()))
    try:
        execute(spec, args.resume, args.device, lambda m: print(m, flush=True))
    except PolypsegError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
