"""One run of a quality plan brought to completion: train (or resume), evaluate, sweep.

:func:`execute` runs the stages of one :class:`~polypseg.bench.runs.RunSpec` in this process;
each stage is skipped when its file exists. ``polypseg bench worker SPEC.json`` (the command
that :mod:`polypseg.bench.quality` starts once per run with ``--jobs N``) calls it on the spec
that the runner wrote into the run folder.

Resume policy: a run folder with a training state but no ``bench/train.json`` was
interrupted; it continues from its state only when resuming was asked for, and is an error
otherwise (nothing is overwritten). A finished run that early stopping ended before the
plan's ``min_epochs`` (:func:`~polypseg.bench.runs.stopped_too_soon`) is continued the same
way, and its evaluations and sweeps are made again.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from polypseg.atomic import atomic_write_json
from polypseg.bench.runs import (
    Evaluation,
    Progress,
    RunSpec,
    eval_file,
    quiet,
    stopped_too_soon,
    sweep_file,
)
from polypseg.paths import portable_tree


def _train(spec: RunSpec, resume: bool, device: str, progress: Progress) -> None:
    from polypseg.bench.hardware import hardware_info
    from polypseg.training import TrainConfig, train
    from polypseg.training.state import state_path

    run_dir = Path(spec.run_dir)
    marker = spec.bench_dir / "train.json"
    if marker.is_file():
        epoch = stopped_too_soon(spec)
        if epoch is None:
            return
        _reopen(spec, epoch, resume)
    # the loop owns the rule (a folder holding a run is refused unless resumed); here a
    # --resume of the plan continues each interrupted run and starts the others afresh
    partial = resume and state_path(run_dir).is_file()
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


def _reopen(spec: RunSpec, epoch: int, resume: bool) -> None:
    """Make a run that early stopping ended before the plan's ``min_epochs`` an interrupted
    run again, to be continued from its resume state: remove its training marker, then the
    evaluations and sweeps of its old best checkpoint (they are made anew once it has
    trained on). ``epoch`` is where early stopping ended it. Without ``resume`` or without
    the state: a RunError, nothing touched."""
    from polypseg.errors import RunError
    from polypseg.training.state import state_path

    floor = spec.train.get("min_epochs")
    if not resume or not state_path(spec.run_dir).is_file():
        raise RunError(
            f"run {spec.key} stopped at epoch {epoch}, before the plan's min_epochs {floor}; "
            + ("continue it with --resume" if state_path(spec.run_dir).is_file() else
               f"its resume state is not in {spec.run_dir}: move that folder away to train it "
               "anew"))
    (spec.bench_dir / "train.json").unlink()  # first: from here on it is an interrupted run
    for entry in sorted({evaluation.entry for evaluation in spec.evaluations}):
        shutil.rmtree(spec.bench_dir / entry, ignore_errors=True)  # bench/ENTRY: its results


def _evaluate(spec: RunSpec, evaluation: Evaluation, device: str, progress: Progress) -> None:
    from polypseg.evaluation import evaluate_run

    if eval_file(spec, evaluation).is_file():
        return
    data_dir, split_file = spec.data_dir, spec.split_file
    if evaluation.cross:
        other = spec.others[str(evaluation.dataset)]
        data_dir, split_file = other["data_dir"], other["split_file"]
    where = f"{evaluation.dataset}'s" if evaluation.cross else "the"
    progress(f"{spec.key}: evaluating {evaluation.entry} on {where} test split")
    evaluate_run(spec.run_dir, data_dir, subset="test", split_file=split_file,
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
            progress: Progress = quiet) -> None:
    """Bring one run to completion: train (or resume), then every evaluation and sweep.

    Args:
        spec: the run: its training config, evaluations and sweeps.
        resume: continue a half-done run from its resume state (otherwise it is an error).
        device: ``cpu``, ``cuda`` or ``cuda:N``; ``None``: ``auto``.
        progress: called with one line per stage.
    """
    from polypseg.devices import resolve_device

    used = str(resolve_device(device or "auto"))
    spec.bench_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(spec.bench_dir / "spec.json", portable_tree(spec.to_dict()))
    _train(spec, resume, used, progress)
    for evaluation in spec.evaluations:
        _evaluate(spec, evaluation, used, progress)
        if not evaluation.cross:
            _sweep(spec, evaluation, used, progress)
