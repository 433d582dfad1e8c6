"""The runs of a quality plan: what each trains and evaluates, and where its files go.

Layout under the plan's ``runs`` folder::

    splits/DATASET.json                 split file shared by every run of the dataset
    DATASET/ENTRY/seedS/                a run folder of polypseg.training.train
        checkpoints/best.*, metrics.csv, config.json      (written by train)
        bench/spec.json                 what the runner asked for (a :class:`RunSpec`)
        bench/train.json                completion marker: training finished, its wall time
        bench/ENTRY/test[-tta-rot90].json   evaluate_run on the test split (one per entry)
        bench/ENTRY/sweep.json          sweep_runs over the plan's angles (one per entry)
        bench/ENTRY/cross-OTHER/test*.json  the test split of another dataset (cross_dataset)

An evaluation-only entry (``unet+tta``: ``from: unet, tta: rot90``) adds its own
``bench/ENTRY/`` files to the runs of its source entry and trains nothing. A run is complete
when every one of these files exists (:func:`is_complete`), which is all that "finished"
means: a run folder committed to git and cloned elsewhere counts as finished there too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from polypseg.bench.plan import EntrySpec, Plan, PlanError
from polypseg.errors import RunError

Progress = Callable[[str], None]


def quiet(_message: str) -> None:
    """A progress callback that says nothing."""
    pass


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a trained run: under the name of ``entry``, with ``tta``.

    ``dataset`` names another dataset of the plan whose test split the run is evaluated on
    (cross-dataset generalisation; no sweep); ``None`` is the run's own test split.
    """

    entry: str
    tta: str | None = None
    dataset: str | None = None

    @property
    def cross(self) -> bool:
        """Whether this evaluation is on another dataset than the run was trained on."""
        return self.dataset is not None


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
    others: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per other dataset of a cross-dataset plan: its ``data_dir`` and ``split_file``."""
    train_fraction: float = 1.0
    """The share of the dataset's training split the run trains on (a nested subset)."""

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
        from polypseg.training.config import upgrade_keys

        data = dict(data)
        data["evaluations"] = [Evaluation(**e) for e in data["evaluations"]]
        data["train"] = upgrade_keys(data["train"], "bench spec")  # written before the rename
        return cls(**data)


def resolve_entries(plan: Plan) -> dict[str, dict[str, Any]]:
    """Width, parameters and MACs at 256 px of every training entry.

    A ``match`` entry gets ``zoo.match_params(variant, params of the matched entry)``.
    """
    import zoo

    # the plan's model options (e.g. the CPU study's head_norm: false) shape every count
    depth_kw = {**(plan.train_options.get("model_options") or {}),
                **({} if plan.depth is None else {"depth": plan.depth})}
    resolved: dict[str, dict[str, Any]] = {}

    def describe(entry: EntrySpec, width: int) -> dict[str, Any]:
        kw = {**depth_kw, **({"depth": entry.depth} if entry.depth is not None else {})}
        model = zoo.create(entry.variant, in_channels=3, out_channels=1, width=width, **kw)
        info = zoo.describe(model, (256, 256))
        return {"width": width, "params": int(info["params"]), "macs_256": int(info["macs"])}

    for entry in plan.training_entries():
        if entry.width is not None:
            resolved[entry.name] = describe(entry, entry.width)
    for entry in plan.training_entries():
        if entry.match is not None:
            target = resolved[entry.match]["params"]
            kw = {**depth_kw, **({"depth": entry.depth} if entry.depth is not None else {})}
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
    """Every training run of the plan (dataset x training entry x seed).

    Ordered so that whole seeds finish first (every run of the first seed, on every dataset,
    before any run of the second), and within a seed in the plan's order of entries, each on
    every dataset in turn: the plan lists what it needs first (its baselines, then the
    variants), so a study stopped part-way holds whole paired comparisons, not the costliest
    runs alone.
    """
    widths = widths if widths is not None else resolve_entries(plan)
    runs = []
    for dataset in plan.datasets:
        others = [d for d in plan.datasets  # the other datasets, whole
                  if d.base_key != dataset.base_key and d.train_fraction == 1
                  ] if plan.cross_dataset else []
        for entry in plan.training_entries():
            if not entry.covers(dataset):
                continue
            own = [Evaluation(entry.name, entry.tta)] + [
                Evaluation(e.name, e.tta) for e in plan.entries if e.source == entry.name
            ]
            evaluations = own + [
                Evaluation(e.entry, e.tta, other.key) for other in others for e in own
            ]
            for seed in plan.seeds:
                run_dir = plan.runs / dataset.key / entry.name / f"seed{seed}"
                train = {
                    "variant": entry.variant,
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
                if dataset.train_fraction < 1:  # the schedule counts the whole split's steps
                    train["epoch_repeats"] = dataset.epoch_repeats
                if entry.negatives:  # absent at 0: the settings of runs from before the option
                    train["negatives"] = entry.negatives
                runs.append(RunSpec(
                    entry=entry.name, dataset=dataset.key, seed=seed, run_dir=str(run_dir),
                    data_dir=str(dataset.data_dir), split_file=train["split_file"], train=train,
                    evaluations=evaluations, angles=list(plan.angles),
                    sweep_split_file=str(sweep_split_path(plan, dataset.key)),
                    others={o.key: {"data_dir": str(o.data_dir),
                                    "split_file": str(split_path(plan, o.key))}
                            for o in others},
                    train_fraction=dataset.train_fraction,
                ))
    seeds = {seed: i for i, seed in enumerate(plan.seeds)}
    entries = {entry.name: i for i, entry in enumerate(plan.training_entries())}
    runs.sort(key=lambda r: (seeds[r.seed], entries[r.entry]))  # stable: datasets in turn
    return runs


# -- splits -----------------------------------------------------------------------------
def prepare_splits(plan: Plan, progress: Progress = quiet) -> dict[str, dict[str, Any]]:
    """Write (once) each dataset's split file, subsampled per ``limit_train``/``limit_val``/
    ``limit_test``, and the sweeps' split file (test set cut to ``sweep_limit``).

    The benchmark split (``make_split``, seed ``split_seed``) is subsampled with a fixed seed
    so that every run and every evaluation of the plan sees the same images; a seeded random
    subset, not the first N, since ClinicDB's file order is by video sequence. Returns per
    dataset the label, split files, rule and image counts.
    """
    from polypseg.data import (
        discover,
        load_split,
        make_split,
        nested_train_subset,
        subsample_split,
    )

    info = {}
    whole = {}  # base key -> the whole dataset's split (each fraction's subset is cut from it)
    for dataset in sorted(plan.datasets, key=lambda d: d.train_fraction < 1):
        path = split_path(plan, dataset.key)
        if path.is_file():
            split = load_split(path)
        elif dataset.train_fraction < 1:
            split = nested_train_subset(whole[dataset.base_key], dataset.train_fraction,
                                        plan.split_seed)
            split.save(path)
            progress(f"split {dataset.key}: {split.counts()} -> {path}")
        else:
            split = make_split(discover(dataset.data_dir), seed=plan.split_seed)
            limits = {"train": plan.limit_train, "val": plan.limit_val, "test": plan.limit_test}
            split = subsample_split(split, limits, plan.split_seed)
            split.save(path)
            progress(f"split {dataset.key}: {split.counts()} -> {path}")
        if dataset.train_fraction == 1:
            whole[dataset.key] = split
        sweep_path = sweep_split_path(plan, dataset.key)
        if not sweep_path.is_file():
            subsample_split(split, {"test": plan.sweep_limit}, plan.split_seed).save(sweep_path)
        info[dataset.key] = {"label": dataset.label, "split_file": str(path),
                             "sweep_split_file": str(sweep_path), "rule": split.rule,
                             "counts": split.counts(), "base": dataset.base_key,
                             "train_fraction": dataset.train_fraction}
    return {d.key: info[d.key] for d in plan.datasets}


# -- the files of a run ---------------------------------------------------------------------
def eval_file(spec: RunSpec, evaluation: Evaluation) -> Path:
    """Where ``evaluate_run`` writes the test evaluation of ``evaluation`` on this run."""
    from polypseg.evaluation import result_stem

    folder = spec.bench_dir / evaluation.entry
    if evaluation.cross:
        folder = folder / f"cross-{evaluation.dataset}"
    return folder / f"{result_stem('test', evaluation.tta)}.json"


def sweep_file(spec: RunSpec, evaluation: Evaluation) -> Path:
    """Where ``sweep_runs`` writes the sweep of ``evaluation`` on this run."""
    return spec.bench_dir / evaluation.entry / "sweep.json"


#: Training settings that make a run folder a run of this spec (a plan edited after a run
#: finished must not reuse it under the same name).
SPEC_KEYS = ("variant", "width", "depth", "size", "seed", "batch_size", "lr", "epochs", "rot_aug",
             "epoch_repeats")


def spec_mismatch(spec: RunSpec) -> dict[str, tuple[Any, Any]]:
    """``key -> (asked, found)`` for each :data:`SPEC_KEYS` setting where the run folder's
    ``config.json`` differs from ``spec`` (empty when it agrees or holds no run yet)."""
    from polypseg.training.config import upgrade_keys

    path = Path(spec.run_dir) / "config.json"
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found = upgrade_keys(found, f"run config {path}")  # a run written before the rename
    mismatch = {key: (spec.train.get(key), found.get(key)) for key in SPEC_KEYS
                if key in spec.train and key in found and spec.train[key] != found[key]}
    negatives = (float(spec.train.get("negatives") or 0), float(found.get("negatives") or 0))
    if negatives[0] != negatives[1]:  # absent (a run from before the option) counts as 0
        mismatch["negatives"] = negatives
    return mismatch


def check_spec(spec: RunSpec) -> None:
    """:class:`~polypseg.errors.RunError` when the run folder holds a run of other settings
    than ``spec`` asks for (the plan changed after it ran): name them, touch nothing."""
    mismatch = spec_mismatch(spec)
    if mismatch:
        what = ", ".join(f"{k} {found!r} (the plan asks {asked!r})"
                         for k, (asked, found) in mismatch.items())
        raise RunError(f"run {spec.key} in {spec.run_dir} was trained with {what}; the plan "
                       "changed after it ran: move that folder away or name the entry anew")


def stopped_too_soon(spec: RunSpec) -> int | None:
    """The epoch at which early stopping ended ``spec``'s finished training, when the plan's
    rule would have trained on: before its ``min_epochs`` (and its cap). ``None`` otherwise.

    Such a run was trained under an older stopping rule (``min_epochs`` added or raised
    after it finished). Its first epochs are what the new rule trains too, so the run is
    continued from its resume state rather than trained again; a run that patience ended at
    or after ``min_epochs`` is what the new rule gives, and stays finished.
    """
    from polypseg.training.logs import read_metrics_csv

    floor = min(int(spec.train.get("min_epochs") or 0), int(spec.train.get("epochs") or 0))
    metrics = Path(spec.run_dir) / "metrics.csv"
    if floor <= 0 or not (spec.bench_dir / "train.json").is_file() or not metrics.is_file():
        return None
    trained = len(read_metrics_csv(metrics))
    return trained if trained < floor else None


def is_complete(spec: RunSpec) -> bool:
    """Whether every stage of ``spec`` has its file (training marker, evals, sweeps) and its
    training ended where the plan's stopping rule ends it (:func:`stopped_too_soon`)."""
    if stopped_too_soon(spec) is not None:
        return False
    needed = [spec.bench_dir / "train.json"]
    for evaluation in spec.evaluations:
        needed.append(eval_file(spec, evaluation))
        if not evaluation.cross:
            needed.append(sweep_file(spec, evaluation))
    return all(p.is_file() for p in needed)


#: The states of a run folder that ``bench quality --dry-run`` reports.
FINISHED, EVALUATING, HALF_DONE, TO_DO = "finished", "trained", "half-done", "to do"
#: A finished run that the plan's ``min_epochs`` trains on (:func:`stopped_too_soon`).
STOPPED_TOO_SOON = "stopped too soon"
#: An unfinished run that ``--only`` leaves out.
LEFT_OUT = "left out"


def run_status(spec: RunSpec) -> tuple[str, str]:
    """Where ``spec``'s run stands, without touching it: ``(state, detail)``.

    ``finished`` (every stage has its file: reused as it is), ``stopped too soon`` (early
    stopping ended it before the plan's ``min_epochs``: ``--resume`` continues it from its
    resume state, then evaluates it again), ``trained`` (training ended; evaluations or sweeps
    to do), ``half-done`` (a resume state from an interrupted training; ``--resume``
    continues it, a run without it starts over) or ``to do``.
    """
    from polypseg.training.state import STATE_NAME

    early = stopped_too_soon(spec)
    if early is not None:
        floor = spec.train.get("min_epochs")
        if (Path(spec.run_dir) / "checkpoints" / STATE_NAME).is_file():
            return STOPPED_TOO_SOON, (f"stopped at epoch {early}, before min_epochs {floor}: "
                                      "--resume continues it")
        return STOPPED_TOO_SOON, (f"stopped at epoch {early}, before min_epochs {floor}; no "
                                  "resume state here: move the folder away to train it anew")
    if is_complete(spec):
        return FINISHED, ""
    if (spec.bench_dir / "train.json").is_file():
        return EVALUATING, "evaluations to do"
    state = Path(spec.run_dir) / "checkpoints" / STATE_NAME
    if state.is_file():
        return HALF_DONE, _resume_point(state)
    return TO_DO, ""


def _resume_point(path: Path) -> str:
    """Where ``--resume`` continues from the resume state at ``path``, in words: after a whole
    epoch, or inside one (a run stopped mid-epoch), or why it cannot."""
    from polypseg.errors import RunError
    from polypseg.training.state import load_resume_state

    try:
        state = load_resume_state(path)
        epoch, batches = int(state["epoch"]), int(state["batches_done"])
    except (RunError, KeyError, TypeError, ValueError) as err:
        return f"its resume state cannot be read: {err}"
    if batches:
        return f"resumes in epoch {epoch + 1}, after its first {batches} batches, with --resume"
    return f"resumes after epoch {epoch} with --resume"


def select_runs(specs: list[RunSpec], patterns: list[str] | None) -> list[RunSpec]:
    """The runs whose key (``DATASET/ENTRY/seedN``) matches one of the shell-style
    ``patterns`` (``fnmatch``: ``*/p4*/seed2``, ``cvc/*/*``), in plan order; every run when
    ``patterns`` is empty. A pattern that matches no run of the plan is an error (a typo
    would otherwise train nothing, silently)."""
    from fnmatch import fnmatchcase

    if not patterns:
        return list(specs)
    unmatched = [p for p in patterns if not any(fnmatchcase(s.key, p) for s in specs)]
    if unmatched:
        raise PlanError(f"--only {', '.join(unmatched)} matches no run of the plan (run keys "
                        f"look like {specs[0].key if specs else 'DATASET/ENTRY/seedN'})")
    return [s for s in specs if any(fnmatchcase(s.key, p) for p in patterns)]
