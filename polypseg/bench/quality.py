"""Quality benchmark runner: a plan's runs trained, evaluated and swept, resumably, in parallel.

What the runs are and where their files go: :mod:`polypseg.bench.runs`; one run's stages:
:mod:`polypseg.bench.worker`; the tables and plots: :mod:`polypseg.bench.collect`.

A stage whose file exists is never redone, so a second invocation of a finished plan trains
nothing. With ``jobs > 1`` runs execute as subprocesses (``python -m polypseg bench worker
SPEC.json``), each with ``cores // jobs`` torch threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from polypseg.atomic import atomic_write_json
from polypseg.bench.collect import write_results
from polypseg.bench.plan import Plan
from polypseg.bench.runs import (
    Progress,
    RunSpec,
    check_spec,
    is_complete,
    plan_runs,
    prepare_splits,
    quiet,
    resolve_entries,
    select_runs,
)
from polypseg.bench.worker import execute
from polypseg.errors import PolypsegError
from polypseg.paths import portable_tree

#: Environment variable that tells a worker subprocess how many torch threads to use.
THREADS_ENV = "POLYPSEG_BENCH_THREADS"


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
    atomic_write_json(spec_file, portable_tree(spec.to_dict()))
    command = [sys.executable, "-m", "polypseg", "bench", "worker", str(spec_file)]
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
            progress: Progress = quiet) -> dict[str, str | None]:
    """Execute ``specs``: in this process when ``jobs == 1``, else ``jobs`` subprocesses.

    Returns each run's error message (``None`` when it finished).

    Args:
        specs: the runs to bring to completion, in order.
        jobs: runs at once; above 1 each run is a ``polypseg bench worker`` subprocess with ``cores
            // jobs`` torch threads.
        resume: continue half-done runs from their resume state.
        device: ``cpu``, ``cuda``, ``cuda:N``; ``None``/``auto``/``cuda`` with several GPUs: one GPU
            per worker thread, round robin.
        progress: called with one line per run started and finished.
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
    progress: Progress = quiet,
    collect_only: bool = False,
    only: list[str] | None = None,
) -> Outcome:
    """Run every unfinished run of ``plan``, then collect, tabulate and plot all of them
    (with ``collect_only``: only collect the finished runs, train nothing; with ``only``:
    train only the unfinished runs whose key matches one of these patterns, see
    :func:`~polypseg.bench.runs.select_runs`; the tables still hold every finished run).

    Args:
        plan: the validated plan.
        jobs: runs at once (see :func:`run_all`).
        out: the folder of the collected tables and plots; ``None``: the plan's ``out``.
        resume: continue half-done runs from their resume state.
        device: where the runs train and evaluate (see :func:`run_all`); ``None``: CUDA when
            available.
        command: the command line, recorded in ``quality-PLAN.json``.
        progress: called with one line per step of the study.
        collect_only: train and evaluate nothing; only collect the finished runs.
        only: shell patterns on run keys (``DATASET/ENTRY/seedN``); ``None``: every unfinished run.
    """
    datasets = prepare_splits(plan, progress)
    entries = resolve_entries(plan)
    specs = plan_runs(plan, entries)
    for spec in specs:  # a folder left by an edited plan is an error, never silently reused
        check_spec(spec)
    selected = {s.key for s in select_runs(specs, only)}
    outcome = Outcome()
    pending = []
    for spec in specs:
        (outcome.reused if is_complete(spec) else pending).append(spec)
    outcome.reused = [s.key for s in outcome.reused]
    left = [s for s in pending if s.key not in selected]
    pending = [s for s in pending if s.key in selected]
    progress(f"plan {plan.label}: {len(specs)} runs, {len(outcome.reused)} finished, "
             f"{len(pending)} to do" + (f" ({len(left)} more not selected by --only)"
                                        if left else "") + f", jobs {jobs}")
    errors = {} if collect_only else run_all(pending, jobs, resume, device, progress)
    for spec in [] if collect_only else pending:
        message = errors.get(spec.key)
        if message:
            outcome.failed[spec.key] = message
        else:
            outcome.trained.append(spec.key)
    outcome.written = write_results(plan, specs, entries, datasets, out or plan.out, command,
                                    progress)
    return outcome
