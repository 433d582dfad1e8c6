"""Deterministic train/val/test splits, saved as JSON and reused by every later command.

Rules (docs/design.md, benchmark protocol), one per dataset in :mod:`polypseg.data.registry`:

- by image (Kvasir-SEG): seeded random 80/10/10.
- by video sequence (CVC-ClinicDB), so that no polyp is seen in two sets; among many seeded
  shuffles of the sequences the cut whose frame fractions are closest to 70/15/15 is kept.
- a test set (CVC-ColonDB, ETIS-LaribPolypDB, CVC-300): every image in ``test``.
- k-fold: the data (images, or whole sequences for ClinicDB) in ``k`` seeded folds of near-equal
  size; fold ``f`` tests on fold ``f`` and validates on fold ``f+1 (mod k)``, so over the ``k``
  splits every image is in the test set once and in the validation set once.
- combined: each dataset split by its own rule, entries written ``"<dataset>/<stem>"``.

A split file records the dataset, rule, seed (and ``k``, ``fold``), the stems of each set and,
for ClinicDB, the sequences of each set. :func:`load_split` validates it (RunError) and
:func:`select` checks it against a dataset folder (DataError).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from polypseg.atomic import atomic_write_json
from polypseg.data import registry
from polypseg.data.layouts import DatasetIndex, Pair, canonical_dataset, natural_key
from polypseg.data.text import shorten
from polypseg.errors import DataError, RunError

SUBSETS: tuple[str, str, str] = ("train", "val", "test")
FORMAT = "polypseg-split"
VERSION = 1
#: Seeded shuffles of the sequences tried for the grouped split (the best cut is kept).
_GROUP_TRIALS = 300
_COMBINED_SEPARATOR = "/"


@dataclass
class Split:
    """One train/val/test split of one dataset, or of two datasets combined.

    ``sets`` maps ``"train"``, ``"val"``, ``"test"`` to file stems (``"<dataset>/<stem>"`` in a
    combined split); ``groups`` maps them to the ClinicDB video sequences they hold (else None).
    ``source`` is the file it was loaded from, for messages; it is not saved.
    """

    dataset: str
    rule: str
    seed: int
    sets: dict[str, list[str]]
    k: int | None = None
    fold: int | None = None
    groups: dict[str, list[int]] | None = None
    source: Path | None = field(default=None, compare=False)

    @property
    def datasets(self) -> list[str]:
        """The datasets this split draws from (two for a combined split)."""
        return self.dataset.split("+")

    @property
    def combined(self) -> bool:
        """True when the entries are ``"<dataset>/<stem>"``."""
        return len(self.datasets) > 1

    def counts(self) -> dict[str, int]:
        """Number of entries in each set."""
        return {name: len(self.sets[name]) for name in SUBSETS}

    def locate(self, entry: str) -> tuple[str, str]:
        """``(dataset, stem)`` of one entry of :attr:`sets`."""
        if not self.combined:
            return self.dataset, entry
        dataset, _, stem = entry.partition(_COMBINED_SEPARATOR)
        return dataset, stem

    def _identity(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "rule": self.rule,
            "seed": self.seed,
            "k": self.k,
            "fold": self.fold,
            "sets": {name: self.sets[name] for name in SUBSETS},
        }

    def sha256(self) -> str:
        """Hash of what defines the split (not of the file's formatting), for checkpoints."""
        text = json.dumps(self._identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written by :meth:`save`."""
        identity = self._identity()
        sets = identity.pop("sets")
        return {
            "format": FORMAT,
            "version": VERSION,
            **identity,
            "counts": self.counts(),
            "sequences": self.groups,
            "sets": sets,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the split to ``path`` atomically (folders created) and return the path."""
        target = Path(path)
        atomic_write_json(target, self.to_dict())
        self.source = target
        return target


def _bad(path: Path, why: str) -> RunError:
    return RunError(f"split file {path}: {why}")


def _string_lists(value: Any, path: Path, what: str) -> dict[str, list[str]]:
    if not isinstance(value, dict) or set(value) != set(SUBSETS):
        raise _bad(path, f'"{what}" must be an object with keys {", ".join(SUBSETS)}')
    for name, items in value.items():
        if not isinstance(items, list) or not all(isinstance(s, str) and s for s in items):
            raise _bad(path, f'"{what}.{name}" must be a list of file names')
    return {name: list(value[name]) for name in SUBSETS}


def _optional_int(data: dict[str, Any], key: str, path: Path) -> int | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise _bad(path, f'"{key}" must be an integer or null, not {value!r}')
    return value


def split_from_dict(data: Any, path: Path) -> Split:
    """Validate a parsed split file; RunError naming ``path`` on anything wrong."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _bad(path, f'not a polypseg split (no "format": "{FORMAT}")')
    if data.get("version") != VERSION:
        raise _bad(path, f"unsupported version {data.get('version')!r} (expected {VERSION})")
    for key, kind in (("dataset", str), ("rule", str), ("seed", int)):
        if not isinstance(data.get(key), kind):
            raise _bad(path, f'"{key}" missing or not a {kind.__name__}')
    try:
        dataset = "+".join(canonical_dataset(name) for name in data["dataset"].split("+"))
    except DataError as err:
        raise _bad(path, str(err)) from err
    sets = _string_lists(data.get("sets"), path, "sets")
    if not any(sets.values()):
        raise _bad(path, "all of train, val and test are empty")
    seen: dict[str, str] = {}
    for name in SUBSETS:
        for stem in sets[name]:
            if stem in seen:
                raise _bad(path, f"{stem!r} is in both {seen[stem]} and {name}")
            seen[stem] = name
    groups = data.get("sequences")
    if groups is not None and not (
        isinstance(groups, dict)
        and all(isinstance(v, list) and all(isinstance(s, int) for s in v) for v in groups.values())
    ):
        raise _bad(path, '"sequences" must map set names to lists of sequence numbers')
    k, fold = _optional_int(data, "k", path), _optional_int(data, "fold", path)
    return Split(dataset, data["rule"], data["seed"], sets, k, fold, groups, source=path)


def load_split(path: str | os.PathLike[str]) -> Split:
    """Read and validate a split file written by :meth:`Split.save`; RunError if unusable."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise _bad(file, "not found (make one with `polypseg data split`)") from err
    except (OSError, UnicodeDecodeError) as err:
        raise _bad(file, f"cannot read ({err})") from err
    if not text.strip():
        raise _bad(file, "empty file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise _bad(file, f"not valid JSON ({err})") from err
    return split_from_dict(data, file)


# --- rules -----------------------------------------------------------------------------------


def _check_seed(seed: int) -> None:
    if not isinstance(seed, int) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, not {seed!r}")


def _sorted(stems: Iterable[str]) -> list[str]:
    return sorted(stems, key=natural_key)


def _split_by_image(
    stems: Sequence[str], seed: int, fractions: tuple[float, float, float]
) -> dict[str, list[str]]:
    """Seeded random split of ``stems`` with ``round(n * fraction)`` val and test images."""
    n = len(stems)
    if n < 3:
        raise DataError(f"need at least 3 images to split into train/val/test, found {n}")
    order = [stems[i] for i in np.random.default_rng(seed).permutation(n)]
    n_test = max(1, round(n * fractions[2]))
    n_val = max(1, round(n * fractions[1]))
    return {
        "test": _sorted(order[:n_test]),
        "val": _sorted(order[n_test : n_test + n_val]),
        "train": _sorted(order[n_test + n_val :]),
    }


def _groups_of(index: DatasetIndex) -> dict[int, list[str]]:
    """Stems by ClinicDB sequence; DataError if a pair has no sequence."""
    unknown = [p.stem for p in index.pairs if p.sequence is None]
    if unknown:
        raise DataError(
            f"{index.root}: {len(unknown)} file(s) have no video sequence ({shorten(unknown, 5)}); "
            "CVC-ClinicDB "
            "files must be named by frame number 1-612 to split by sequence"
        )
    groups: dict[int, list[str]] = {}
    for pair in index.pairs:
        if pair.sequence is not None:
            groups.setdefault(pair.sequence, []).append(pair.stem)
    return groups


def _cut_groups(sizes: np.ndarray, fractions: tuple[float, float, float]) -> tuple[float, int, int]:
    """Best cut ``(cost, i, j)`` of an ordered list of group sizes: test ``[:i]``, val ``[i:j]``."""
    total = float(sizes.sum())
    cum = np.concatenate([[0.0], np.cumsum(sizes)]) / total
    g = len(sizes)
    i = np.arange(g + 1)[:, None]
    j = np.arange(g + 1)[None, :]
    cost = np.abs(cum[:, None] - fractions[2]) + np.abs(cum[None, :] - cum[:, None] - fractions[1])
    cost = np.where((i >= 1) & (j > i) & (j <= g - 1), cost, np.inf)
    best = int(np.argmin(cost))
    bi, bj = divmod(best, g + 1)
    return float(cost[bi, bj]), bi, bj


def _split_by_group(
    groups: dict[int, list[str]], seed: int, fractions: tuple[float, float, float]
) -> tuple[dict[str, list[str]], dict[str, list[int]]]:
    """Whole groups to each set, frame fractions as close to ``fractions`` as the search finds."""
    ids = sorted(groups)
    if len(ids) < 3:
        raise DataError(f"need at least 3 video sequences to split by sequence, found {len(ids)}")
    sizes = np.array([len(groups[g]) for g in ids], dtype=float)
    rng = np.random.default_rng(seed)
    best: tuple[float, np.ndarray, int, int] | None = None
    for _ in range(_GROUP_TRIALS):
        order = rng.permutation(len(ids))
        cost, i, j = _cut_groups(sizes[order], fractions)
        if best is None or cost < best[0]:
            best = (cost, order, i, j)
    assert best is not None
    _, order, i, j = best
    chosen = {
        "test": [ids[o] for o in order[:i]],
        "val": [ids[o] for o in order[i:j]],
        "train": [ids[o] for o in order[j:]],
    }
    return _expand(groups, chosen)


def _expand(
    groups: dict[int, list[str]], chosen: dict[str, list[int]]
) -> tuple[dict[str, list[str]], dict[str, list[int]]]:
    sets = {name: _sorted(s for g in chosen[name] for s in groups[g]) for name in SUBSETS}
    return sets, {name: sorted(chosen[name]) for name in SUBSETS}


def _folds(sizes: Sequence[int], k: int, seed: int) -> list[list[int]]:
    """Indices of ``sizes`` in ``k`` folds of near-equal total size (seeded greedy, best of
    several shuffles)."""
    if not 3 <= k <= len(sizes):
        raise DataError(f"k-fold needs 3 <= k <= {len(sizes)} (number of units), got k={k}")
    rng = np.random.default_rng(seed)
    target = sum(sizes) / k
    best: tuple[float, list[list[int]]] | None = None
    trials = 1 if all(s == 1 for s in sizes) else _GROUP_TRIALS
    for _ in range(trials):
        folds: list[list[int]] = [[] for _ in range(k)]
        load = [0] * k
        for unit in rng.permutation(len(sizes)):
            f = min(range(k), key=lambda i: (load[i], i))
            folds[f].append(int(unit))
            load[f] += sizes[unit]
        cost = max(abs(x - target) for x in load)
        if best is None or cost < best[0]:
            best = (cost, folds)
    assert best is not None
    return best[1]


def _fold_roles(k: int, fold: int) -> dict[int, str]:
    if not 0 <= fold < k:
        raise DataError(f"fold must be in 0..{k - 1}, got {fold}")
    roles = {f: "train" for f in range(k)}
    roles[fold] = "test"
    roles[(fold + 1) % k] = "val"
    return roles


def _rule_name(index: DatasetIndex, k: int | None = None) -> str:
    return registry.get(index.name).split.describe(k)


def make_split(index: DatasetIndex, seed: int = 0) -> Split:
    """The benchmark split of ``index`` by its dataset's rule (:mod:`polypseg.data.registry`):
    80/10/10 by image (Kvasir-SEG), ~70/15/15 of frames by video sequence (CVC-ClinicDB), or
    every image in ``test`` (a test set); deterministic for a seed."""
    _check_seed(seed)
    rule = registry.get(index.name).split
    if rule.unit == "test":
        sets = {"train": [], "val": [], "test": _sorted(index.stems)}
        return Split(index.name, _rule_name(index), seed, sets)
    if rule.unit == "sequence":
        sets, groups = _split_by_group(_groups_of(index), seed, rule.fractions)
        return Split(index.name, _rule_name(index), seed, sets, groups=groups)
    sets = _split_by_image(index.stems, seed, rule.fractions)
    return Split(index.name, _rule_name(index), seed, sets)


def subsample_split(split: Split, limits: dict[str, int | None], seed: int) -> Split:
    """A copy of ``split`` keeping a seeded random ``limits[SET]`` images of each set
    (``train``, ``val``, ``test``; the whole set where the limit is ``None``)."""
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


def nested_train_subset(split: Split, fraction: float, seed: int) -> Split:
    """A copy of ``split`` whose training set is a seeded ``fraction`` of its own (at least
    one image); validation and test sets unchanged.

    The training stems are put in one seeded order and the first ``round(fraction * n)`` kept,
    so for one ``seed`` the subsets are nested: the 10% set lies inside the 25% set, which lies
    inside the 50% set. ``fraction`` 1 returns ``split`` itself.

    Args:
        split: the full split.
        fraction: the share of the training set kept, in ``(0, 1]``.
        seed: the subset's seed (one for every fraction of a study, so the sets nest).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return split
    order = sorted(split.sets["train"])
    random.Random(f"polypseg-train-subset-{seed}").shuffle(order)
    kept = sorted(order[: max(1, round(fraction * len(order)))])
    rule = (f"{split.rule}; training set: a nested {fraction:g} of it ({len(kept)} images, "
            f"seed {seed})")
    sets = {**split.sets, "train": kept}
    return dataclasses.replace(split, sets=sets, rule=rule, source=None)


def make_kfold(index: DatasetIndex, k: int, fold: int, seed: int = 0) -> Split:
    """Split ``fold`` (0-based) of a seeded ``k``-fold partition (by sequence for ClinicDB).

    Args:
        index: the dataset's image/mask pairs.
        k: the number of folds.
        fold: the fold tested on (0-based); fold ``fold + 1`` (mod ``k``) validates.
        seed: seed of the partition.
    """
    _check_seed(seed)
    roles = _fold_roles(k, fold)
    rule = registry.get(index.name).split
    if rule.unit == "test":
        raise DataError(f"{index.name} is a test set: every image is a test image, no folds")
    if rule.unit == "sequence":
        groups = _groups_of(index)
        ids = sorted(groups)
        folds = _folds([len(groups[g]) for g in ids], k, seed)
        chosen: dict[str, list[int]] = {name: [] for name in SUBSETS}
        for f, members in enumerate(folds):
            chosen[roles[f]].extend(ids[m] for m in members)
        sets, seqs = _expand(groups, chosen)
        return Split(index.name, _rule_name(index, k), seed, sets, k, fold, seqs)
    stems = index.stems
    folds = _folds([1] * len(stems), k, seed)
    members_of: dict[str, list[str]] = {name: [] for name in SUBSETS}
    for f, members in enumerate(folds):
        members_of[roles[f]].extend(stems[m] for m in members)
    sets = {name: _sorted(v) for name, v in members_of.items()}
    return Split(index.name, _rule_name(index, k), seed, sets, k, fold)


def make_kfolds(index: DatasetIndex, k: int, seed: int = 0) -> list[Split]:
    """All ``k`` splits of :func:`make_kfold`."""
    return [make_kfold(index, k, fold, seed) for fold in range(k)]


def make_combined_split(
    indexes: Sequence[DatasetIndex], seed: int = 0, k: int | None = None, fold: int | None = None
) -> Split:
    """One split over several datasets, each split by its own rule (or k-fold when ``k`` is
    given); entries are ``"<dataset>/<stem>"`` so that they are unambiguous.

    Args:
        indexes: one index per dataset.
        seed: seed of every dataset's split.
        k: split each dataset ``k``-fold; ``None``: by its own benchmark rule.
        fold: with ``k``: the fold tested on (0-based).
    """
    names = [ix.name for ix in indexes]
    if len(indexes) < 2 or len(set(names)) != len(names):
        raise DataError(f"a combined split needs different datasets, got {', '.join(names)}")
    if k is None:
        parts = [make_split(ix, seed) for ix in indexes]
    elif fold is None:
        raise DataError("a combined k-fold split needs both k and fold")
    else:
        parts = [make_kfold(ix, k, fold, seed) for ix in indexes]
    sets = {
        name: [f"{p.dataset}{_COMBINED_SEPARATOR}{s}" for p in parts for s in p.sets[name]]
        for name in SUBSETS
    }
    groups = next((p.groups for p in parts if p.groups is not None), None)
    rule = "combined: " + "; ".join(f"{p.dataset} {p.rule}" for p in parts)
    return Split("+".join(names), rule, seed, sets, k, fold, groups)


def default_split_path(dataset: str, seed: int) -> Path:
    """``splits/<dataset>-seed<S>.json``, relative to the working directory."""
    return Path("splits") / f"{dataset}-seed{seed}.json"


def fold_path(path: str | os.PathLike[str], k: int, fold: int) -> Path:
    """The file of one fold of a k-fold split: ``a/b.json`` -> ``a/b-k5-fold0.json``."""
    base = Path(path)
    return base.with_name(f"{base.stem}-k{k}-fold{fold}{base.suffix or '.json'}")


# --- using a split ---------------------------------------------------------------------------


def _where(split: Split) -> str:
    return f"split file {split.source}" if split.source else f"split ({split.dataset})"


def resolve(index: DatasetIndex | Sequence[DatasetIndex], split: Split) -> dict[str, list[Pair]]:
    """The pairs of every set of ``split`` found in the dataset folder(s).

    A combined split may be resolved against one of its datasets (its other entries are
    skipped). Raises DataError when no folder holds a dataset of the split, or when stems of
    the split are missing from the folder (a different or incomplete copy of the dataset).
    """
    indexes = [index] if isinstance(index, DatasetIndex) else list(index)
    by_name = {ix.name: ix for ix in indexes}
    usable = [name for name in split.datasets if name in by_name]
    if not usable:
        held = ", ".join(f"{ix.root} ({ix.name})" for ix in indexes)
        raise DataError(
            f"{_where(split)} is for {split.dataset} but the data folder holds {held}; "
            "pass the matching folder, or a split of that folder's dataset with --split-file "
            "(to test on another dataset)"
        )
    lookup = {name: {p.stem: p for p in by_name[name].pairs} for name in usable}
    resolved: dict[str, list[Pair]] = {name: [] for name in SUBSETS}
    missing: list[str] = []
    for subset in SUBSETS:
        for entry in split.sets[subset]:
            dataset, stem = split.locate(entry)
            if dataset not in lookup:
                continue
            pair = lookup[dataset].get(stem)
            if pair is None:
                missing.append(entry)
            else:
                resolved[subset].append(pair)
    if missing:
        roots = ", ".join(str(by_name[name].root) for name in usable)
        raise DataError(
            f"{_where(split)}: {len(missing)} file(s) not found in {roots}: {shorten(missing)}"
        )
    return resolved


def select(index: DatasetIndex | Sequence[DatasetIndex], split: Split, subset: str) -> list[Pair]:
    """The pairs of one set (``"train"``, ``"val"`` or ``"test"``) of ``split``.

    Raises DataError for an unknown set name, files of the split missing from the folder
    (see :func:`resolve`), or an empty set.
    """
    if subset not in SUBSETS:
        raise DataError(f"unknown subset {subset!r}: expected one of {', '.join(SUBSETS)}")
    pairs = resolve(index, split)[subset]
    if not pairs:
        raise DataError(f"{_where(split)}: the {subset} set is empty")
    return pairs
