"""What a report is made of: run folders, sweep results and bench quality results, found and
tied together.

``polypseg report`` takes any mix of

* run folders (``RUN/checkpoints/best.json``; with ``metrics.csv``, ``config.json`` and, when
  they were made, ``RUN/eval/test.json`` and ``RUN/sweep/``),
* sweep results (``sweep.json`` or its folder, written by ``polypseg sweep``, with
  ``sweep_images.csv`` beside it),
* bench quality results (``quality-PLAN.json``, or a folder holding them), whose rows name their
  run folders and per-entry ``bench/ENTRY/{test*.json,sweep.json,sweep_images.csv}``,
* folders of those (such as the demo's output folder), searched one level deep.

Every model the report shows becomes a :class:`ModelView`: one trained run, evaluated under one
name with or without test-time augmentation, with the files that describe it. Paths recorded
inside result files may be relative to where the command that wrote them ran: they are looked
up as given, then against the result file's folder and each of its parents.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polypseg.checkpoint import CheckpointMeta, read_meta
from polypseg.errors import RunError

QUALITY_KIND = "polypseg-quality/1"
SWEEP_FORMAT = "polypseg-sweep/1"


@dataclass
class ModelView:
    """One model as the report shows it: a run evaluated under ``label`` (with ``tta``)."""

    label: str
    dataset: str
    run_dir: Path | None
    tta: str | None = None
    eval_file: Path | None = None
    """``evaluate_run``'s JSON of the test set (per-image metrics), if there is one."""
    sweep_file: Path | None = None
    """A ``sweep.json`` holding this run; ``sweep_images.csv`` lies beside it."""
    sweep_name: str | None = None
    """The run's name inside that sweep."""
    data_dir: Path | None = None
    source: str = "run"
    """``run`` (a run folder or sweep given directly) or ``bench`` (a quality result)."""
    recorded_run: str | None = None
    """The run folder as the result file recorded it (named when it is not found)."""
    dataset_key: str | None = None
    """The dataset's registry key (``kvasir``, ``cvc``): ``--data KEY=DIR`` and the shared
    data folder find its images by it."""

    @property
    def images_csv(self) -> Path | None:
        """The per-image sweep scores beside :attr:`sweep_file`, if present."""
        if self.sweep_file is None:
            return None
        path = self.sweep_file.parent / "sweep_images.csv"
        return path if path.is_file() else None


@dataclass
class QualityResult:
    """A bench quality document and the file it came from."""

    path: Path
    doc: dict[str, Any]


@dataclass
class SweepResult:
    """A sweep document (``polypseg-sweep/1``) and its file."""

    path: Path
    doc: dict[str, Any]


@dataclass
class Study:
    """Everything one report shows, in the order the inputs named it."""

    inputs: list[Path]
    runs: list[Path] = field(default_factory=list)
    sweeps: list[SweepResult] = field(default_factory=list)
    quality: list[QualityResult] = field(default_factory=list)
    models: list[ModelView] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; :class:`RunError` naming the file otherwise."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunError(f"cannot read {path}: {err}") from None
    if not isinstance(data, dict):
        raise RunError(f"{path} does not hold a JSON object")
    return data


def run_meta(run_dir: Path) -> CheckpointMeta | None:
    """The metadata of a run folder's best checkpoint (``None`` when it has none);
    :class:`RunError` when it is unreadable."""
    if not (run_dir / "checkpoints" / "best.json").is_file():
        return None
    return read_meta(run_dir / "checkpoints" / "best")


def _try_json(path: Path) -> dict[str, Any] | None:
    try:
        return read_json(path)
    except RunError:
        return None


def resolve_recorded(text: str | None, relative_to: Path) -> Path | None:
    """The existing path that ``text`` (recorded in the file ``relative_to``) names, or None.

    Tried as given (absolute, or relative to the working directory), then against the folder
    of ``relative_to`` and each of its parents.
    """
    if not text:
        return None
    path = Path(text)
    if path.exists():
        return path
    if path.is_absolute():
        return None
    for base in Path(relative_to).resolve().parents:
        candidate = base / path
        if candidate.exists():
            return candidate
    return None


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` is a training run folder (it holds a best checkpoint)."""
    return (path / "checkpoints" / "best.json").is_file()


def _kind(path: Path) -> str | None:
    """``run``, ``sweep``, ``quality`` or ``parent`` (a folder of those), else None."""
    if path.is_file():
        doc = _try_json(path) if path.suffix == ".json" else None
        if doc is None:
            return None
        if doc.get("kind") == QUALITY_KIND:
            return "quality"
        if doc.get("format") == SWEEP_FORMAT:
            return "sweep"
        return None
    if not path.is_dir():
        return None
    if is_run_folder(path):
        return "run"
    if (path / "sweep.json").is_file():
        return "sweep"
    if any(_kind(p) == "quality" for p in sorted(path.glob("quality-*.json"))):
        return "quality"
    return "parent"


def _expand(path: Path) -> list[tuple[str, Path]]:
    """``(kind, path)`` of the inputs that ``path`` names (folders of inputs expanded)."""
    kind = _kind(path)
    if kind is None:
        if not path.exists():
            raise RunError(f"no such file or folder: {path}")
        raise RunError(
            f"{path} is not a run folder, a sweep result (sweep.json) or a bench quality "
            "result (quality-*.json)"
        )
    if kind == "sweep" and path.is_dir():
        return [("sweep", path / "sweep.json")]
    if kind == "quality" and path.is_dir():
        return [("quality", p) for p in sorted(path.glob("quality-*.json"))
                if _kind(p) == "quality"]
    if kind != "parent":
        return [(kind, path)]
    found = [(k, p) for p in sorted(path.iterdir()) if (k := _kind(p)) in ("run", "sweep")]
    found = [("sweep", p / "sweep.json") if k == "sweep" and p.is_dir() else (k, p)
             for k, p in found]
    if not found:
        raise RunError(
            f"{path} holds no run folder, sweep result or bench quality result (searched one "
            "level deep)"
        )
    return found


def _run_dataset(run_dir: Path) -> str:
    try:
        meta = run_meta(run_dir)
    except RunError:
        meta = None
    split = (meta.split if meta is not None else None) or {}
    if split.get("dataset"):
        return str(split["dataset"])
    evaluated = _try_json(run_dir / "eval" / "test.json") or {}
    return str(evaluated.get("dataset") or "")


def run_data_dir(run_dir: Path, key: str | None = None) -> Path | None:
    """The dataset folder a run recorded in its ``config.json`` if it exists here, else the
    folder of dataset ``key`` in the project's layout (:func:`polypseg.paths.dataset_folder`:
    ``../shared/data/<folder>`` beside the clone that holds the run)."""
    from polypseg.paths import dataset_folder

    config = run_dir / "config.json"
    recorded = (_try_json(config) or {}).get("data")
    found = resolve_recorded(recorded, config) if recorded else None
    return found or dataset_folder(key or _run_dataset(run_dir), run_dir)


def apply_data(models: list[ModelView], data: dict[str | None, Path]) -> None:
    """Point each model at the dataset folder ``data`` names for its dataset key (``None``:
    every model), where ``--data`` overrides what was recorded."""
    from polypseg.paths import dataset_key

    for view in models:
        key = view.dataset_key or dataset_key(view.dataset)
        if key in data:
            view.data_dir = data[key]
        elif None in data:
            view.data_dir = data[None]


def _same(a: Path | None, b: Path | None) -> bool:
    return a is not None and b is not None and a.resolve() == b.resolve()


def _views_of_quality(result: QualityResult) -> list[ModelView]:
    from polypseg.bench.collect import best_runs
    from polypseg.evaluation import result_stem

    doc, where = result.doc, result.path
    labels = {k: v.get("label", k) for k, v in (doc.get("datasets") or {}).items()}
    best = best_runs(doc.get("results", []))
    datasets = list(dict.fromkeys([*labels, *(d for _, d in best)]))
    entries = list(dict.fromkeys([*(e["name"] for e in doc.get("entries", [])),
                                  *(e for e, _ in best)]))
    views = []
    for dataset, entry in ((d, e) for d in datasets for e in entries):
        row = best.get((entry, dataset))
        if row is None:
            continue
        run_dir = resolve_recorded(row.get("run"), where)
        sweep_file = resolve_recorded(row.get("sweep_file"), where)
        eval_file = None
        if sweep_file is not None:
            candidate = sweep_file.parent / f"{result_stem('test', row.get('tta'))}.json"
            eval_file = candidate if candidate.is_file() else None
        sweep_doc = _try_json(sweep_file) if sweep_file else None
        sweep_name = (sweep_doc or {}).get("runs", [{}])[0].get("name")
        data_dir = resolve_recorded((sweep_doc or {}).get("data_dir"), sweep_file or where)
        if data_dir is None and run_dir is not None:
            data_dir = run_data_dir(run_dir, dataset)
        if data_dir is None:
            from polypseg.paths import dataset_folder

            data_dir = dataset_folder(dataset, where)
        views.append(ModelView(
            label=entry, dataset=labels.get(dataset, dataset), run_dir=run_dir,
            tta=row.get("tta"), eval_file=eval_file, sweep_file=sweep_file,
            sweep_name=sweep_name, data_dir=data_dir, source="bench",
            recorded_run=row.get("run"), dataset_key=dataset,
        ))
    return views


def collect(paths: list[Path]) -> Study:
    """The :class:`Study` that ``paths`` name; :class:`RunError` for a path that is none of the
    accepted inputs (the message names it)."""
    if not paths:
        raise RunError("report needs at least one run folder, sweep or bench result")
    study = Study(inputs=[Path(p) for p in paths])
    seen: set[Path] = set()
    for path in study.inputs:
        for kind, item in _expand(Path(path)):
            key = item.resolve()
            if key in seen:
                continue
            seen.add(key)
            if kind == "run":
                study.runs.append(item)
            elif kind == "sweep":
                study.sweeps.append(SweepResult(item, read_json(item)))
            else:
                study.quality.append(QualityResult(item, read_json(item)))
    for result in study.quality:
        study.models += _views_of_quality(result)
    _add_run_views(study)
    lost = [v for v in study.models if v.run_dir is None]
    if lost:
        study.notes.append(
            f"{len(lost)} of {len(study.models)} models have no run folder here (e.g. "
            f"{lost[0].recorded_run}, as recorded): no gallery or training curves for them; run "
            "the report where the runs are"
        )
    return study


def _add_run_views(study: Study) -> None:
    """One view per run folder given and per run of each sweep given, merged by folder."""
    from polypseg.paths import dataset_key

    views: list[ModelView] = []
    for run_dir in study.runs:
        own_eval = run_dir / "eval" / "test.json"
        own_sweep = run_dir / "sweep" / "sweep.json"
        dataset = _run_dataset(run_dir)
        view = ModelView(
            label=run_dir.name, dataset=dataset, run_dir=run_dir,
            eval_file=own_eval if own_eval.is_file() else None, data_dir=run_data_dir(run_dir),
            dataset_key=dataset_key(dataset),
        )
        if own_sweep.is_file():
            doc = _try_json(own_sweep) or {}
            if doc.get("format") == SWEEP_FORMAT and doc.get("runs"):
                view.sweep_file, view.sweep_name = own_sweep, doc["runs"][0].get("name")
        views.append(view)
    for sweep in study.sweeps:
        for run in sweep.doc.get("runs", []):
            run_dir = resolve_recorded(run.get("run"), sweep.path)
            match = next((v for v in views if _same(v.run_dir, run_dir)), None)
            if match is None:
                match = ModelView(
                    label=run["name"], dataset=sweep.doc.get("dataset", ""), run_dir=run_dir,
                    data_dir=run_data_dir(run_dir) if run_dir else None,
                    dataset_key=dataset_key(sweep.doc.get("dataset")),
                )
                if run_dir is not None:
                    own_eval = run_dir / "eval" / "test.json"
                    match.eval_file = own_eval if own_eval.is_file() else None
                else:
                    match.recorded_run = run.get("run")
                views.append(match)
            # a sweep given on the command line wins over the run's own sweep/ folder
            match.sweep_file, match.sweep_name = sweep.path, run["name"]
            data_dir = resolve_recorded(sweep.doc.get("data_dir"), sweep.path)
            match.data_dir = match.data_dir or data_dir
            match.dataset = match.dataset or str(sweep.doc.get("dataset", ""))
    study.models += views
