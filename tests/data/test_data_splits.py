"""Splits: rules, determinism, sequences kept whole, k-fold coverage, JSON round trip,
validation of split files and of a split against a folder."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from polypseg.data.clinicdb import sequence_of
from polypseg.data.layouts import DatasetIndex, Pair, discover
from polypseg.data.splits import (
    SUBSETS,
    Split,
    fold_path,
    load_split,
    make_combined_split,
    make_kfold,
    make_kfolds,
    make_split,
    resolve,
    select,
)
from polypseg.errors import DataError, RunError


def fake_index(name: str, stems: list[str]) -> DatasetIndex:
    """An index over files that need not exist (splits only look at stems and sequences)."""
    root = Path("/nonexistent") / name
    pairs = [
        Pair(
            s,
            root / "images" / f"{s}.jpg",
            root / "masks" / f"{s}.jpg",
            sequence_of(int(s)) if name == "cvc-clinicdb" else None,
        )
        for s in stems
    ]
    return DatasetIndex(root=root, name=name, layout="images-masks", pairs=pairs)


KVASIR = fake_index("kvasir-seg", [f"k{i:04d}" for i in range(200)])
MISSING = {133, 419, 480}
CLINICDB = fake_index("cvc-clinicdb", [str(f) for f in range(1, 547) if f not in MISSING])


def _partition_ok(split: Split, stems: list[str]) -> None:
    everything = [s for name in SUBSETS for s in split.sets[name]]
    assert sorted(everything) == sorted(stems)  # disjoint and complete


def test_kvasir_80_10_10_deterministic() -> None:
    split = make_split(KVASIR, seed=0)
    assert split.counts() == {"train": 160, "val": 20, "test": 20}
    _partition_ok(split, KVASIR.stems)
    assert split == make_split(KVASIR, seed=0)
    assert split.sets["test"] != make_split(KVASIR, seed=1).sets["test"]
    assert split.groups is None and split.rule.startswith("random by image")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_clinicdb_by_sequence_near_70_15_15(seed: int) -> None:
    split = make_split(CLINICDB, seed=seed)
    _partition_ok(split, CLINICDB.stems)
    seq = {name: {sequence_of(int(s)) for s in split.sets[name]} for name in SUBSETS}
    assert not (seq["train"] & seq["val"] or seq["train"] & seq["test"] or seq["val"] & seq["test"])
    assert split.groups == {name: sorted(v) for name, v in seq.items()}
    n = len(CLINICDB.pairs)
    fractions = [len(split.sets[name]) / n for name in SUBSETS]
    for got, want in zip(fractions, (0.70, 0.15, 0.15), strict=True):
        assert abs(got - want) < 0.02, fractions


def test_clinicdb_split_depends_on_seed_only() -> None:
    assert make_split(CLINICDB, 5) == make_split(CLINICDB, 5)
    assert make_split(CLINICDB, 5).groups != make_split(CLINICDB, 6).groups


def test_clinicdb_needs_sequences() -> None:
    index = fake_index("kvasir-seg", ["a", "b", "c"])
    index.name = "cvc-clinicdb"
    with pytest.raises(DataError, match="no video sequence"):
        make_split(index)
    with pytest.raises(DataError, match="at least 3 video sequences"):
        make_split(fake_index("cvc-clinicdb", ["1", "2", "30"]))


@pytest.mark.parametrize("index", [KVASIR, CLINICDB], ids=["kvasir", "clinicdb"])
def test_kfold_tests_and_validates_each_image_exactly_once(index: DatasetIndex) -> None:
    k = 5
    folds = make_kfolds(index, k, seed=3)
    test_counts = Counter(s for f in folds for s in f.sets["test"])
    val_counts = Counter(s for f in folds for s in f.sets["val"])
    assert set(test_counts) == set(index.stems) and set(test_counts.values()) == {1}
    assert set(val_counts) == set(index.stems) and set(val_counts.values()) == {1}
    sizes = [len(f.sets["test"]) for f in folds]
    assert max(sizes) - min(sizes) <= (1 if index is KVASIR else 12)
    for fold in folds:
        _partition_ok(fold, index.stems)
        if fold.groups:
            assert not set(fold.groups["train"]) & set(fold.groups["test"])
    assert folds[2] == make_kfold(index, k, 2, seed=3)
    assert folds[2] != make_kfold(index, k, 2, seed=4)


def test_kfold_arguments_validated() -> None:
    with pytest.raises(DataError, match="3 <= k"):
        make_kfold(KVASIR, 2, 0)
    with pytest.raises(DataError, match=r"fold must be in 0\.\.4"):
        make_kfold(KVASIR, 5, 5)
    with pytest.raises(DataError, match="seed"):
        make_split(KVASIR, seed=-1)


def test_combined_split_is_unambiguous() -> None:
    kvasir = fake_index("kvasir-seg", ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"])
    split = make_combined_split([kvasir, CLINICDB], seed=0)
    assert split.dataset == "kvasir-seg+cvc-clinicdb" and split.combined
    everything = [s for name in SUBSETS for s in split.sets[name]]
    assert len(everything) == len(set(everything)) == 10 + len(CLINICDB.pairs)
    assert "kvasir-seg/1" in everything and "cvc-clinicdb/1" in everything
    train = select([kvasir, CLINICDB], split, "train")
    assert {p.image.parts[2] for p in train} == {"kvasir-seg", "cvc-clinicdb"}
    only_kvasir = select(kvasir, split, "train")
    assert only_kvasir and all(p.image.parts[2] == "kvasir-seg" for p in only_kvasir)
    with pytest.raises(DataError, match="different datasets"):
        make_combined_split([kvasir, KVASIR])
    folds = make_combined_split([kvasir, CLINICDB], seed=0, k=3, fold=1)
    assert (folds.k, folds.fold) == (3, 1)


def test_json_round_trip(tmp_path: Path) -> None:
    split = make_kfold(CLINICDB, 4, 1, seed=9)
    path = split.save(tmp_path / "nested" / "s.json")
    assert [p.name for p in path.parent.iterdir()] == ["s.json"]  # no temporary left behind
    loaded = load_split(path)
    assert loaded == split and loaded.sha256() == split.sha256()
    assert loaded.source == path
    data = json.loads(path.read_text())
    assert (data["dataset"], data["seed"], data["k"], data["fold"]) == ("cvc-clinicdb", 9, 4, 1)
    assert data["counts"] == split.counts()
    assert make_split(CLINICDB, 0).sha256() != split.sha256()


BAD_FILES = {
    "empty": ("", "empty file"),
    "not-json": ("{", "not valid JSON"),
    "not-split": ('{"a": 1}', "not a polypseg split"),
    "no-sets": (
        '{"format": "polypseg-split", "version": 1, "dataset": "kvasir-seg", "rule": "r", '
        '"seed": 0}',
        '"sets" must be an object',
    ),
    "all-empty": (
        '{"format": "polypseg-split", "version": 1, "dataset": "kvasir-seg", "rule": "r", '
        '"seed": 0, "sets": {"train": [], "val": [], "test": []}}',
        "all of train, val and test are empty",
    ),
    "overlap": (
        '{"format": "polypseg-split", "version": 1, "dataset": "kvasir-seg", "rule": "r", '
        '"seed": 0, "sets": {"train": ["a"], "val": ["a"], "test": []}}',
        "'a' is in both train and val",
    ),
    "bad-dataset": (
        '{"format": "polypseg-split", "version": 1, "dataset": "isic", "rule": "r", '
        '"seed": 0, "sets": {"train": ["a"], "val": [], "test": []}}',
        "unknown dataset",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_split_files_raise_run_error_naming_the_file(tmp_path: Path, case: str) -> None:
    text, message = BAD_FILES[case]
    path = tmp_path / f"{case}.json"
    path.write_text(text)
    with pytest.raises(RunError, match=message) as info:
        load_split(path)
    assert str(path) in str(info.value)


def test_missing_split_file(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="not found"):
        load_split(tmp_path / "none.json")


def test_select_checks_the_folder_against_the_split() -> None:
    split = make_split(KVASIR, seed=0)
    assert [p.stem for p in select(KVASIR, split, "test")] == split.sets["test"]
    assert sum(len(v) for v in resolve(KVASIR, split).values()) == 200
    smaller = fake_index("kvasir-seg", KVASIR.stems[:150])
    with pytest.raises(DataError, match=r"50 file\(s\) not found in /nonexistent/kvasir-seg"):
        select(smaller, split, "train")
    with pytest.raises(DataError, match="is for kvasir-seg"):
        select(CLINICDB, split, "train")
    with pytest.raises(DataError, match="unknown subset 'dev'"):
        select(KVASIR, split, "dev")
    no_test = Split("kvasir-seg", "r", 0, {"train": ["k0000"], "val": [], "test": []})
    with pytest.raises(DataError, match="the test set is empty"):
        select(KVASIR, no_test, "test")


def test_fold_path() -> None:
    assert fold_path("splits/a.json", 5, 0) == Path("splits/a-k5-fold0.json")


def test_real_clinicdb_split_never_spans_a_sequence(clinicdb_dir: Path) -> None:
    index = discover(clinicdb_dir)
    for seed in range(3):
        split = make_split(index, seed)
        owner: dict[int, str] = {}
        for name in SUBSETS:
            for pair in select(index, split, name):
                assert owner.setdefault(pair.sequence, name) == name, (seed, pair.stem)
        n = len(index.pairs)
        assert abs(len(split.sets["train"]) / n - 0.70) < 0.02


def test_real_kvasir_split(kvasir_dir: Path) -> None:
    split = make_split(discover(kvasir_dir), seed=0)
    assert split.counts() == {"train": 718, "val": 90, "test": 90}


def test_nested_train_subsets_are_seeded_nested_and_leave_val_and_test() -> None:
    from polypseg.data import nested_train_subset
    from polypseg.data.splits import Split

    stems = [f"s{i:03d}" for i in range(100)]
    split = Split(dataset="kvasir-seg", rule="r", seed=0,
                  sets={"train": stems[:80], "val": stems[80:90], "test": stems[90:]})
    subsets = {f: nested_train_subset(split, f, seed=3) for f in (0.1, 0.25, 0.5)}
    sizes = {f: len(s.sets["train"]) for f, s in subsets.items()}
    assert sizes == {0.1: 8, 0.25: 20, 0.5: 40}
    assert set(subsets[0.1].sets["train"]) < set(subsets[0.25].sets["train"]) \
        < set(subsets[0.5].sets["train"]) < set(split.sets["train"])
    assert all(s.sets["val"] == split.sets["val"] and s.sets["test"] == split.sets["test"]
               for s in subsets.values())
    assert nested_train_subset(split, 0.25, seed=3).sets == subsets[0.25].sets  # seeded
    assert nested_train_subset(split, 0.25, seed=4).sets["train"] != subsets[0.25].sets["train"]
    assert nested_train_subset(split, 1.0, seed=3) is split
    assert len(nested_train_subset(split, 0.001, seed=3).sets["train"]) == 1
    with pytest.raises(ValueError, match="fraction"):
        nested_train_subset(split, 0.0, seed=3)
