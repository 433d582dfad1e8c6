"""Benchmark plans: the YAML file that fixes every choice of a quality benchmark.

A plan names the datasets, the entries (variant + training/evaluation options), the schedule
shared by every run (size, epochs, batch size, learning rate, seeds) and the sweep angles, so a
benchmark is reproduced by one file and one command. Example (``plans/smoke.yaml``)::

    name: smoke
    reduced: true                  # labels every table "REDUCED"
    size: 32                       # square input side, pixels
    epochs: 1
    batch_size: 4
    lr: 0.001
    seeds: [0]
    angles: "0:360:90"             # start:stop:step (stop excluded) or a list of degrees
    limit_train: 8                 # optional: a seeded random N training images of the split
    limit_val: 4                   # optional: the same for the validation images
    limit_test: 4                  # optional: the same for the test images
    sweep_limit: 4                 # optional: the sweep scores a seeded random N test images
    cross_dataset: false           # optional: also test every run on the other datasets
    baselines: [unet]              # optional: every other entry is compared with these
                                   # (paired bootstrap CI of the per-image Dice difference)
    out: results                   # where quality-NAME.{json,md} and plots go
    runs: runs/bench/smoke         # run folders (git-ignored)
    depth: 2
    datasets:
      kvasir: {data_dir: ../shared/data/Kvasir-SEG}
    entries:
      - {name: unet, variant: unet, width: 4}
      - {name: unet+tta, from: unet, tta: rot90}
      - {name: p4, variant: p4, match: unet}   # width from zoo.match_params
      - {name: p4+neg, variant: p4, match: unet, negatives: 0.2}   # 20% background views

An entry's ``negatives`` (default 0) is the share of each epoch that is background-only views
(``polypseg train --negatives``; :mod:`polypseg.data.negatives`). Its ``datasets`` (default:
all) lists the plan datasets it is trained on, for a plan that cannot afford every run
(``datasets: [kvasir]``; an evaluation-only entry follows the entry it reuses).

A plan may name a counterpart: another plan whose runs differ from its own in one setting (the
192-px study against the 96-px one), and which of its entries answers to each of this plan's::

    compare_with:
      plan: plans/cpu-negatives.yaml           # its finished runs are read, never trained
      entries: {unet: unet+neg, p4: p4+neg}    # this plan's entry -> the other plan's
      note: "96 px, the same recipe"           # optional, says what differs

The tables then add each entry against its counterpart and whether its gain over each
baseline grows or shrinks between the two (:mod:`polypseg.bench.counterpart`).

Relative paths are relative to the project root (the folder holding ``pyproject.toml`` above
the plan file; the plan's own folder when there is none). :func:`load_plan` validates the whole
file and raises :class:`PlanError` with the key, the value and what was expected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polypseg import geometry
from polypseg.errors import PolypsegError
from polypseg.options import Tta

#: Test-time augmentations an entry may name (passed to ``evaluate_run(tta=...)``): every
#: :class:`~polypseg.options.Tta` but none (an entry without ``tta`` has none).
KNOWN_TTA = tuple(tta.value for tta in Tta if tta is not Tta.NONE)


def dataset_label(key: str) -> str:
    """The table label of a plan's dataset key: the registry's title for a name or alias it
    knows (``kvasir`` -> ``Kvasir-SEG``, ``cvc`` -> ``CVC-ClinicDB``), else the key."""
    from polypseg.data import registry
    from polypseg.errors import DataError

    try:
        return registry.get(key).title
    except DataError:
        return key


_TOP_KEYS = {
    "name", "description", "reduced", "size", "epochs", "batch_size", "lr", "seeds", "angles",
    "limit_train", "limit_val", "limit_test", "sweep_limit", "out", "runs", "depth", "datasets",
    "entries", "workers", "split_seed", "train_options", "cross_dataset", "baselines",
    "compare_with",
}
_COMPARE_KEYS = {"plan", "entries", "note"}
_ENTRY_KEYS = {"name", "variant", "width", "match", "rot_aug", "tta", "from", "depth", "note",
               "negatives", "datasets"}
_DATASET_KEYS = {"data_dir", "label", "split", "train_fractions"}


class PlanError(PolypsegError):
    """A benchmark plan that cannot be run as written."""


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a plan: its key (``kvasir``), label and folder.

    A dataset whose plan entry lists ``train_fractions: [0.1, 0.25, 0.5, 1.0]`` becomes one
    spec per fraction: the fraction 1 keeps the dataset's key, each other one is keyed
    ``KEY-PCT`` (``kvasir-10``) and trains on a nested seeded subset of the training split
    (:func:`polypseg.data.nested_train_subset`, seed ``split_seed``) with the validation and
    test splits unchanged. ``base`` is the dataset's own key in both cases.
    """

    key: str
    label: str
    data_dir: Path
    split: dict[str, Any] = field(default_factory=dict)
    base: str = ""
    train_fraction: float = 1.0

    @property
    def base_key(self) -> str:
        """The key of the whole dataset (``kvasir`` for ``kvasir-10``)."""
        return self.base or self.key

    @property
    def epoch_repeats(self) -> int:
        """How many times an epoch draws each training image, so that an epoch on the subset
        takes as many optimiser steps as one on the whole split (1 for the whole split)."""
        return max(1, round(1 / self.train_fraction))


@dataclass(frozen=True)
class Counterpart:
    """Another plan to compare this one's entries with (``compare_with``; see the module
    docstring): its file and the entry of it that answers to each entry of this plan."""

    plan_file: Path
    entries: tuple[tuple[str, str], ...]
    """``(this plan's entry, the other plan's entry)`` pairs, in this plan's order."""
    note: str = ""


@dataclass(frozen=True)
class EntrySpec:
    """One row of the results: a variant trained (or a trained entry re-evaluated) one way.

    ``source`` names the entry whose runs an evaluation-only entry (``tta``) reuses; such an
    entry trains nothing. ``match`` names the entry whose parameter count this one's width is
    matched to (via ``zoo.match_params``); ``width`` fixes it instead.
    """

    name: str
    variant: str
    width: int | None = None
    match: str | None = None
    rot_aug: bool = False
    tta: str | None = None
    source: str | None = None
    depth: int | None = None
    note: str = ""
    negatives: float = 0.0
    """Share of each epoch that is background-only views (``TrainConfig.negatives``)."""
    datasets: tuple[str, ...] | None = None
    """The plan datasets (keys, or base keys of a dataset's training fractions) this entry is
    trained on; ``None``: all of them. A plan that cannot afford every run names here what it
    keeps, so its tables say which runs it never had (not failed ones)."""

    @property
    def trains(self) -> bool:
        """Whether this entry has runs of its own (an evaluation-only entry has none)."""
        return self.source is None

    def covers(self, dataset: DatasetSpec) -> bool:
        """Whether the entry is trained on ``dataset`` (by its key or base key)."""
        return self.datasets is None or bool({dataset.key, dataset.base_key} & set(self.datasets))


@dataclass(frozen=True)
class Plan:
    """A validated benchmark plan (see the module docstring for the YAML)."""

    name: str
    size: int
    epochs: int
    batch_size: int
    lr: float
    seeds: tuple[int, ...]
    angles: tuple[float, ...]
    angles_text: str
    datasets: tuple[DatasetSpec, ...]
    entries: tuple[EntrySpec, ...]
    out: Path
    runs: Path
    root: Path
    reduced: bool = False
    description: str = ""
    limit_train: int | None = None
    limit_val: int | None = None
    limit_test: int | None = None
    sweep_limit: int | None = None
    depth: int | None = None
    workers: int | None = None
    """DataLoader workers of every run (``None``: the trainer's automatic choice)."""
    split_seed: int = 0
    train_options: dict[str, Any] = field(default_factory=dict)
    cross_dataset: bool = False
    """Also evaluate every run on the test split of each other dataset of the plan."""
    baselines: tuple[str, ...] = ()
    """Entries every other entry is compared with (paired bootstrap of per-image Dice)."""
    source_file: Path | None = None
    compare_with: Counterpart | None = None
    """Another plan whose runs this plan's entries are compared with (``compare_with``)."""

    @property
    def label(self) -> str:
        """``NAME`` or ``NAME (REDUCED)``: the label of every table made from this plan."""
        return f"{self.name} (REDUCED)" if self.reduced else self.name

    def relative(self, path: str | Path) -> str:
        """``path`` relative to the project root when it lies under it or beside it (the
        shared data, ``../shared/data/...``), else as given: the form paths take in results
        that are committed and read on other machines."""
        path = Path(path)
        try:
            return str(path.resolve().relative_to(self.root.resolve()))
        except ValueError:
            pass
        lexical = Path(os.path.normpath(path if path.is_absolute() else Path.cwd() / path))
        root = Path(os.path.normpath(self.root.absolute()))
        if lexical.parts[:2] == root.parts[:2] and len(root.parts) > 1:  # same top folder
            return os.path.relpath(lexical, root)
        return str(path)

    def entry(self, name: str) -> EntrySpec:
        """The entry called ``name``."""
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise PlanError(f"plan {self.name!r} has no entry {name!r}")

    def training_entries(self) -> list[EntrySpec]:
        """The entries that train runs of their own, in plan order."""
        return [e for e in self.entries if e.trains]


# -- parsing helpers ------------------------------------------------------------------------
def _where(path: Path | None) -> str:
    return f" in {path}" if path else ""


def _int(value: Any, key: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PlanError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise PlanError(f"{key} must be a positive number, got {value!r}")
    return float(value)


def _optional_int(raw: dict[str, Any], key: str, minimum: int = 1) -> int | None:
    value = raw.get(key)
    return None if value is None else _int(value, key, minimum)


def parse_angles(value: Any) -> tuple[tuple[float, ...], str]:
    """Angles in degrees from ``"start:stop:step"`` (stop excluded) or a list of numbers.

    Returns the angles and a text form for the tables (``0:360:5``).
    """
    if isinstance(value, str):
        try:
            return tuple(geometry.parse_angles(value)), value
        except ValueError as err:
            raise PlanError(
                f"angles must be 'start:stop:step' or a list of numbers: {err}"
            ) from None
    if isinstance(value, list) and value and all(
        isinstance(a, (int, float)) and not isinstance(a, bool) for a in value
    ):
        angles = tuple(float(a) for a in value)
        return angles, ",".join(f"{a:g}" for a in angles)
    raise PlanError(
        f"angles must be 'start:stop:step' or a non-empty list of numbers, got {value!r}"
    )


def find_root(plan_file: Path) -> Path:
    """The project root above ``plan_file`` (holding ``pyproject.toml``), else its folder."""
    folder = plan_file.resolve().parent
    for candidate in (folder, *folder.parents):
        if (candidate / "pyproject.toml").is_file():
            return candidate
    return folder


def _check_mapping(raw: Any, where: str, allowed: set[str]) -> None:
    if not isinstance(raw, dict):
        raise PlanError(f"{where} must be a mapping, got {raw!r}")
    unknown = set(raw) - allowed
    if unknown:
        raise PlanError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")


def _resolve(root: Path, value: Any, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise PlanError(f"{key} must be a path (a non-empty string), got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def _parse_datasets(raw: Any, root: Path, check_paths: bool) -> tuple[DatasetSpec, ...]:
    if not isinstance(raw, dict) or not raw:
        raise PlanError("datasets must be a mapping of key -> {data_dir: PATH}, e.g. kvasir: ...")
    specs = []
    for key, body in raw.items():
        if isinstance(body, str):
            body = {"data_dir": body}
        _check_mapping(body, f"datasets.{key}", _DATASET_KEYS)
        if "data_dir" not in body:
            raise PlanError(f"datasets.{key} needs data_dir")
        data_dir = _resolve(root, body["data_dir"], f"datasets.{key}.data_dir")
        if check_paths and not data_dir.is_dir():
            raise PlanError(
                f"datasets.{key}.data_dir: no such folder {data_dir} "
                f"(relative paths are relative to {root})"
            )
        split = body.get("split") or {}
        if not isinstance(split, dict):
            raise PlanError(f"datasets.{key}.split must be a mapping of make_split options")
        label = str(body.get("label") or dataset_label(str(key)))
        for fraction in _train_fractions(body.get("train_fractions"), str(key)):
            if fraction == 1:
                specs.append(DatasetSpec(key=str(key), label=label, data_dir=data_dir,
                                         split=split, base=str(key)))
                continue
            percent = f"{100 * fraction:g}"
            specs.append(DatasetSpec(
                key=f"{key}-{percent}", label=f"{label}, {percent}% of the training split",
                data_dir=data_dir, split=split, base=str(key), train_fraction=fraction,
            ))
    return tuple(specs)


def _train_fractions(raw: Any, key: str) -> list[float]:
    """The fractions of ``datasets.KEY.train_fractions`` (``[1.0]`` when absent), smallest
    first; each in (0, 1], 1 included (the cross-dataset tests and the comparison with the
    whole split need it), and each a reciprocal of a whole number within 1% (an epoch draws
    every image of a subset ``1 / fraction`` times: 0.1, 0.25, 0.5)."""
    if raw is None:
        return [1.0]
    where = f"datasets.{key}.train_fractions"
    if not isinstance(raw, list) or not raw:
        raise PlanError(f"{where} must be a non-empty list of numbers in (0, 1], got {raw!r}")
    fractions = sorted({_number(f, f"{where}[]") for f in raw})
    for fraction in fractions:
        if fraction > 1 or abs(round(1 / fraction) * fraction - 1) > 0.01:
            raise PlanError(f"{where}: {fraction} is not 1/N for a whole N (0.1, 0.25, 0.5, 1)")
    if fractions[-1] != 1:
        raise PlanError(f"{where} must include 1 (the whole training split)")
    return fractions


def _parse_entry(raw: Any, index: int, variants: set[str] | None) -> EntrySpec:
    _check_mapping(raw, f"entries[{index}]", _ENTRY_KEYS)
    name = raw.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise PlanError(f"entries[{index}].name must be a non-empty string without '/'")
    source = raw.get("from")
    tta = raw.get("tta")
    if tta is not None and tta not in KNOWN_TTA:
        raise PlanError(f"entry {name!r}: tta must be one of {list(KNOWN_TTA)}, got {tta!r}")
    if source is not None:
        if tta is None:
            raise PlanError(f"entry {name!r}: 'from' (reuse runs) needs tta (what changes?)")
        extra = set(raw) & {"variant", "width", "match", "rot_aug", "depth", "negatives",
                            "datasets"}
        if extra:
            raise PlanError(f"entry {name!r} reuses the runs of {source!r}: "
                            f"it cannot set {sorted(extra)}")
        return EntrySpec(name=name, variant="", source=str(source), tta=tta,
                         note=str(raw.get("note", "")))
    variant = raw.get("variant")
    if not isinstance(variant, str):
        raise PlanError(f"entry {name!r} needs variant (or from + tta)")
    if variants is not None and variant not in variants:
        raise PlanError(f"entry {name!r}: unknown variant {variant!r}; "
                        f"known: {', '.join(sorted(variants))}")
    width = raw.get("width")
    match = raw.get("match")
    if width is not None and match is not None:
        raise PlanError(f"entry {name!r}: give width or match, not both")
    if width is None and match is None:
        raise PlanError(f"entry {name!r}: give width (int) or match (an entry name)")
    rot_aug = raw.get("rot_aug", False)
    if not isinstance(rot_aug, bool):
        raise PlanError(f"entry {name!r}: rot_aug must be true or false, got {rot_aug!r}")
    negatives = raw.get("negatives", 0)
    if (isinstance(negatives, bool) or not isinstance(negatives, (int, float))
            or not 0 <= negatives <= 0.9):
        raise PlanError(f"entry {name!r}: negatives must be a share of the epoch in [0, 0.9], "
                        f"got {negatives!r}")
    datasets = raw.get("datasets")
    if datasets is not None and (not isinstance(datasets, list) or not datasets
                                 or not all(isinstance(d, str) for d in datasets)):
        raise PlanError(f"entry {name!r}: datasets must be a non-empty list of dataset keys, "
                        f"got {datasets!r}")
    return EntrySpec(
        name=name,
        variant=variant,
        negatives=float(negatives),
        datasets=None if datasets is None else tuple(datasets),
        width=None if width is None else _int(width, f"entry {name!r}: width", 1),
        match=None if match is None else str(match),
        rot_aug=rot_aug,
        tta=tta,
        depth=None if raw.get("depth") is None else _int(raw["depth"], "depth", 1),
        note=str(raw.get("note", "")),
    )


def _check_references(entries: tuple[EntrySpec, ...]) -> None:
    by_name: dict[str, EntrySpec] = {}
    for entry in entries:
        if entry.name in by_name:
            raise PlanError(f"entry name {entry.name!r} is used twice")
        by_name[entry.name] = entry
    for entry in entries:
        for ref, what in ((entry.source, "from"), (entry.match, "match")):
            if ref is None:
                continue
            target = by_name.get(ref)
            if target is None:
                raise PlanError(f"entry {entry.name!r}: {what} {ref!r} is not an entry of the plan")
            if not target.trains:
                raise PlanError(f"entry {entry.name!r}: {what} {ref!r} must be an entry that "
                                "trains (not an evaluation-only one)")
            if what == "match" and target.width is None:
                raise PlanError(f"entry {entry.name!r}: match {ref!r} needs {ref!r} to give a "
                                "fixed width")


def _check_entry_datasets(entries: tuple[EntrySpec, ...], datasets: tuple[DatasetSpec, ...]
                          ) -> None:
    """Every dataset an entry names is one of the plan's (a key or a base key)."""
    keys = {d.key for d in datasets} | {d.base_key for d in datasets}
    for entry in entries:
        unknown = sorted(set(entry.datasets or ()) - keys)
        if unknown:
            raise PlanError(f"entry {entry.name!r}: datasets {unknown} are not datasets of the "
                            f"plan ({', '.join(sorted(keys))})")


def known_variants() -> set[str]:
    """The variant names of the zoo registry."""
    import zoo

    return set(zoo.available())


def _check_keys(raw: Any, where: str) -> None:
    """:class:`PlanError` unless ``raw`` is a mapping with every required key and no other."""
    if not isinstance(raw, dict):
        raise PlanError(f"a plan must be a YAML mapping{where}, got {type(raw).__name__}")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise PlanError(f"unknown plan keys {sorted(unknown)}{where}; allowed: {sorted(_TOP_KEYS)}")
    missing = {"name", "size", "epochs", "batch_size", "lr", "seeds", "datasets", "entries"} - set(
        raw
    )
    if missing:
        raise PlanError(f"plan{where} lacks required keys {sorted(missing)}")


def _parse_name(name: Any) -> str:
    """The plan's name: letters, digits, ``-`` and ``_`` only (it names files)."""
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise PlanError(f"name must be letters, digits, '-' or '_' (used in file names), "
                        f"got {name!r}")
    return name


def _parse_entries(entries_raw: Any, variants: set[str]) -> tuple[EntrySpec, ...]:
    """The plan's entries, each checked (:func:`_parse_entry`) and their references too."""
    if not isinstance(entries_raw, list) or not entries_raw:
        raise PlanError("entries must be a non-empty list of mappings")
    entries = tuple(_parse_entry(e, i, variants) for i, e in enumerate(entries_raw))
    _check_references(entries)
    return entries


def _flag(raw: dict[str, Any], key: str) -> bool:
    """The boolean ``raw[key]`` (false when absent)."""
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise PlanError(f"{key} must be true or false, got {value!r}")
    return value


def _parse_baselines(baselines: Any, entries: tuple[EntrySpec, ...]) -> list[str]:
    """The baseline entries: a list of names of the plan's entries."""
    names = {e.name for e in entries}
    if not isinstance(baselines, list) or not all(b in names for b in baselines):
        raise PlanError(f"baselines must be a list of entry names of the plan "
                        f"({', '.join(sorted(names))}), got {baselines!r}")
    return baselines


def _parse_counterpart(raw: Any, root: Path, entries: tuple[EntrySpec, ...],
                       check_paths: bool) -> Counterpart | None:
    """The plan's ``compare_with`` (``None`` when absent); its plan file must exist when
    ``check_paths``, and every key of its ``entries`` must be an entry of this plan."""
    if raw is None:
        return None
    _check_mapping(raw, "compare_with", _COMPARE_KEYS)
    if "plan" not in raw or "entries" not in raw:
        raise PlanError("compare_with needs plan (a plan file) and entries (a mapping)")
    plan_file = _resolve(root, raw["plan"], "compare_with.plan")
    if check_paths and not plan_file.is_file():
        raise PlanError(f"compare_with.plan: no such file {plan_file}")
    pairs = raw["entries"]
    names = [e.name for e in entries]
    if (not isinstance(pairs, dict) or not pairs
            or not all(isinstance(v, str) and v for v in pairs.values())):
        raise PlanError("compare_with.entries must map entries of this plan to entry names of "
                        f"the other, got {pairs!r}")
    unknown = sorted(set(pairs) - set(names))
    if unknown:
        raise PlanError(f"compare_with.entries: {unknown} are not entries of this plan "
                        f"({', '.join(names)})")
    ordered = tuple((name, str(pairs[name])) for name in names if name in pairs)
    return Counterpart(plan_file=plan_file, entries=ordered, note=str(raw.get("note", "")))


def parse_plan(
    raw: Any,
    root: Path,
    *,
    source_file: Path | None = None,
    check_paths: bool = True,
    variants: set[str] | None = None,
) -> Plan:
    """Validate a plan's parsed YAML (a mapping) into a :class:`Plan`.

    ``variants`` is the set of known variant names (default: ``zoo.available()``);
    ``check_paths`` requires every dataset folder to exist.

    Args:
        raw: the parsed YAML document (anything else is a :class:`PlanError`).
        root: the project root that relative paths (datasets, ``out``, ``runs``) are resolved
            against.
        source_file: the plan's file, named in error messages and recorded; ``None``: parsed from
            elsewhere.
        check_paths: require every dataset folder to exist.
        variants: the known variant names; ``None``: ``zoo.available()``.
    """
    _check_keys(raw, _where(source_file))
    name = _parse_name(raw["name"])
    seeds = raw["seeds"]
    if not isinstance(seeds, list) or not seeds:
        raise PlanError(f"seeds must be a non-empty list of integers, got {seeds!r}")
    entries = _parse_entries(raw["entries"], known_variants() if variants is None else variants)
    angles, angles_text = parse_angles(raw.get("angles", "0:360:5"))
    train_options = raw.get("train_options") or {}
    if not isinstance(train_options, dict):
        raise PlanError("train_options must be a mapping of extra TrainConfig fields")
    reduced = _flag(raw, "reduced")
    cross_dataset = _flag(raw, "cross_dataset")
    baselines = _parse_baselines(raw.get("baselines") or [], entries)
    datasets = _parse_datasets(raw["datasets"], root, check_paths)
    _check_entry_datasets(entries, datasets)
    return Plan(
        name=name,
        description=str(raw.get("description", "")).strip(),
        reduced=reduced,
        size=_int(raw["size"], "size", 8),
        epochs=_int(raw["epochs"], "epochs", 1),
        batch_size=_int(raw["batch_size"], "batch_size", 1),
        lr=_number(raw["lr"], "lr"),
        seeds=tuple(_int(s, "seeds[]", 0) for s in seeds),
        angles=angles,
        angles_text=angles_text,
        datasets=datasets,
        entries=entries,
        out=_resolve(root, raw.get("out", "results"), "out"),
        runs=_resolve(root, raw.get("runs", f"runs/bench/{name}"), "runs"),
        root=root,
        limit_train=_optional_int(raw, "limit_train"),
        limit_val=_optional_int(raw, "limit_val"),
        limit_test=_optional_int(raw, "limit_test"),
        sweep_limit=_optional_int(raw, "sweep_limit"),
        depth=_optional_int(raw, "depth"),
        workers=None if raw.get("workers") is None else _int(raw["workers"], "workers", 0),
        split_seed=_int(raw.get("split_seed", 0), "split_seed", 0),
        train_options=dict(train_options),
        cross_dataset=cross_dataset,
        baselines=tuple(str(b) for b in baselines),
        source_file=source_file,
        compare_with=_parse_counterpart(raw.get("compare_with"), root, entries, check_paths),
    )


def load_plan(
    path: str | Path,
    *,
    check_paths: bool = True,
    variants: set[str] | None = None,
    root: Path | None = None,
) -> Plan:
    """Read and validate the plan in ``path`` (see :func:`parse_plan`).

    Args:
        path: the YAML plan file.
        check_paths: require every dataset folder to exist.
        variants: the known variant names; ``None``: ``zoo.available()``.
        root: the project root for relative paths; ``None``: :func:`find_root` of ``path``.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise PlanError(f"no such plan file: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise PlanError(f"plan {path} is not valid YAML: {err}") from None
    except UnicodeDecodeError as err:
        raise PlanError(f"plan {path} is not UTF-8 text: {err}") from None
    return parse_plan(
        raw,
        root if root is not None else find_root(path),
        source_file=path,
        check_paths=check_paths,
        variants=variants,
    )
