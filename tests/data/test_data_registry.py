"""The dataset registry: one record per dataset, and the code that reads it instead of
special cases (layouts, splits, download sources, bench labels and citations)."""

from __future__ import annotations

from pathlib import Path

import pytest

from polypseg.data import discover, make_kfold, make_split, registry
from polypseg.data.layouts import LAYOUTS
from polypseg.errors import DataError

TEST_SETS = {"Kvasir": "kvasir-seg", "CVC-ClinicDB": "cvc-clinicdb", "CVC-ColonDB": "cvc-colondb",
             "ETIS-LaribPolypDB": "etis-laribpolypdb", "CVC-300": "cvc-300"}


def test_every_record_is_complete_and_reachable_by_its_names() -> None:
    layouts = {layout.name for layout in LAYOUTS}
    assert set(TEST_SETS.values()) <= set(registry.names())
    for record in registry.DATASETS:
        assert record.citation and record.source and record.terms and record.title
        assert set(record.layouts) <= layouts, record.name
        assert record.split.unit in registry.SPLIT_UNITS
        assert sum(record.split.fractions) == pytest.approx(1.0)
        for name in (record.name, record.title, *record.aliases):
            assert registry.get(name) is record and registry.canonical(name) == record.name
    assert {r.name for r in registry.test_sets()} == {"cvc-colondb", "etis-laribpolypdb",
                                                      "cvc-300"}
    with pytest.raises(DataError, match="unknown dataset 'nope': expected one of kvasir-seg"):
        registry.get("nope")


@pytest.mark.parametrize(("folder", "name"), [
    *TEST_SETS.items(), ("Kvasir-SEG", "kvasir-seg"), ("kvasir-seg-official", "kvasir-seg"),
    ("my CVC-ClinicDB copy", "cvc-clinicdb"), ("cvc300", "cvc-300"), ("CVC", "cvc-clinicdb"),
    ("EndoScene", "cvc-300"), ("polyps", None),
])
def test_folder_names(folder: str, name: str | None) -> None:
    found = registry.by_folder_name(folder)
    assert (found.name if found else None) == name


def test_a_layout_names_a_dataset_only_when_one_ships_in_it() -> None:
    assert registry.by_layout("original-groundtruth").name == "cvc-clinicdb"
    assert registry.by_layout("images-masks") is None  # every dataset ships in it


@pytest.mark.parametrize("folder", ["CVC-ColonDB", "ETIS-LaribPolypDB", "CVC-300"])
def test_a_test_set_in_the_fields_layout_is_one_test_set(make_dataset, folder: str) -> None:
    root = make_dataset(f"TestDataset/{folder}", ["1", "2", "10", "a"], suffix=".png")
    index = discover(root)
    assert (index.name, index.detected_by) == (TEST_SETS[folder], "folder name")
    assert all(pair.sequence is None for pair in index.pairs)  # frame numbers mean nothing
    split = make_split(index, seed=3)
    assert split.sets == {"train": [], "val": [], "test": ["1", "2", "10", "a"]}
    assert split.rule == "test set: every image"
    with pytest.raises(DataError, match="test set"):
        make_kfold(index, 3, 0)


def test_the_rules_of_the_training_sets_come_from_their_records(make_dataset) -> None:
    kvasir = discover(make_dataset("Kvasir-SEG", [f"k{i}" for i in range(20)]))
    assert make_split(kvasir).rule == "random by image, 80/10/10"
    assert make_split(kvasir).counts() == {"train": 16, "val": 2, "test": 2}
    clinic = discover(make_dataset("CVC-ClinicDB", [str(f) for f in range(1, 120)]))
    assert clinic.sequences and make_split(clinic).rule.startswith("by video sequence")


def test_sources_labels_and_citations_are_the_registrys(tmp_path: Path) -> None:
    from polypseg.bench.bundles import citation
    from polypseg.bench.plan import dataset_label
    from polypseg.data.download import SOURCES

    assert set(SOURCES) == set(registry.names())
    assert SOURCES["kvasir-seg"].url and SOURCES["cvc-300"].url is None  # fetched by hand
    assert (dataset_label("kvasir"), dataset_label("cvc"), dataset_label("mine")) == (
        "Kvasir-SEG", "CVC-ClinicDB", "mine")
    assert citation("CVC-ClinicDB").startswith("Bernal et al.")
    assert "PraNet" in citation("ETIS-LaribPolypDB") and citation("mine") == "mine"
