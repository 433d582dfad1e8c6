"""Layout detection, pairing by stem, dataset identity and the problems of a folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data_helpers import CLINICDB_FRAMES, LAYOUT_FOLDERS, DatasetWriter, write_rgb

from polypseg.data.io import read_pair
from polypseg.data.layouts import canonical_dataset, discover
from polypseg.errors import DataError

KVASIR_STEMS = [
    "cju0qkwl35piu0993l0dewei2",
    "cju0qoxqj9q6s0835b43399p4",
    "ck2bxiswtxuw80838qkisqjwz",
]


def test_official_kvasir_layout_with_varied_sizes(make_dataset: DatasetWriter) -> None:
    sizes = [(30, 47), (64, 48), (72, 41)]
    root = make_dataset("Kvasir-SEG", KVASIR_STEMS, sizes=sizes)
    (root / "kavsir_bboxes.json").write_text(json.dumps({KVASIR_STEMS[0]: {}}))
    index = discover(root)
    assert (index.name, index.layout) == ("kvasir-seg", "images-masks")
    assert index.stems == sorted(KVASIR_STEMS)
    assert index.bboxes == root / "kavsir_bboxes.json"
    assert index.problems == [] and index.sequences == []
    shapes = {read_pair(p)[0].shape[:2] for p in index.pairs}
    assert shapes == set(sizes)


@pytest.mark.parametrize("layout", ["original-groundtruth", "tif-original", "png-original"])
def test_clinicdb_layouts_carry_sequences(make_dataset: DatasetWriter, layout: str) -> None:
    root = make_dataset("unnamed", CLINICDB_FRAMES, layout=layout)
    index = discover(root)
    assert index.layout == layout
    assert (index.name, index.detected_by) == ("cvc-clinicdb", "layout")
    assert index.stems == CLINICDB_FRAMES  # numeric order, not "1", "103", "2", ...
    by_stem = {p.stem: p.sequence for p in index.pairs}
    assert by_stem["25"] == 1 and by_stem["26"] == 2 and by_stem["103"] == 5
    assert index.sequences == [1, 2, 3, 4, 5]
    image, mask = read_pair(index.pairs[0])
    assert image.shape == (32, 40, 3) and set(np.unique(mask)) == {0, 1}


def test_shared_layout_with_frame_numbers_is_clinicdb(make_dataset: DatasetWriter) -> None:
    index = discover(make_dataset("mydata", ["3", "30", "60"]))
    assert (index.name, index.detected_by) == ("cvc-clinicdb", "frame-number file names")
    assert [p.sequence for p in index.pairs] == [1, 2, 3]


def test_names_by_folder_and_by_default(make_dataset: DatasetWriter) -> None:
    assert discover(make_dataset("my-kvasir-copy", ["1", "2"])).name == "kvasir-seg"
    assert discover(make_dataset("cvc_clinicdb", ["a", "b"])).name == "cvc-clinicdb"
    plain = discover(make_dataset("plain", ["a", "b"]))
    assert plain.name == "kvasir-seg" and plain.detected_by.startswith("default")


def test_dataset_override_and_aliases(make_dataset: DatasetWriter) -> None:
    root = make_dataset("mydata", ["1", "2", "613"])
    assert discover(root, dataset="Kvasir").name == "kvasir-seg"
    forced = discover(root, dataset="CVC-ClinicDB")
    assert forced.name == "cvc-clinicdb" and forced.detected_by == "given"
    # 613 is no ClinicDB frame: reported, no sequence
    assert [p.sequence for p in forced.pairs] == [1, 1, None]
    assert any("613" in p and "frame number" in p for p in forced.problems)
    with pytest.raises(DataError, match="unknown dataset 'isic'"):
        discover(root, dataset="isic")
    assert canonical_dataset("clinicdb") == "cvc-clinicdb"


def test_folder_holding_one_dataset_folder_is_accepted(make_dataset: DatasetWriter) -> None:
    root = make_dataset("download/Kvasir-SEG", KVASIR_STEMS)
    index = discover(root.parent)
    assert index.root == root and len(index.pairs) == 3


def test_folder_holding_two_datasets_is_ambiguous(make_dataset: DatasetWriter) -> None:
    make_dataset("both/a", ["x"])
    root = make_dataset("both/b", ["y"]).parent
    with pytest.raises(DataError, match="several datasets"):
        discover(root)


def test_missing_mask_and_lonely_mask_are_reported(make_dataset: DatasetWriter) -> None:
    root = make_dataset("kv", KVASIR_STEMS)
    (root / "masks" / f"{KVASIR_STEMS[0]}.jpg").unlink()
    (root / "images" / f"{KVASIR_STEMS[1]}.jpg").unlink()
    index = discover(root)
    assert index.stems == [KVASIR_STEMS[2]]
    assert sorted(p.name for p in index.unmatched) == sorted(f"{s}.jpg" for s in KVASIR_STEMS[:2])
    text = "\n".join(index.problems)
    assert f"{KVASIR_STEMS[0]}.jpg: image has no mask" in text
    assert f"{KVASIR_STEMS[1]}.jpg: mask has no image" in text


def test_stray_files_are_ignored_not_paired(make_dataset: DatasetWriter) -> None:
    root = make_dataset("kv", ["a", "b"])
    for folder in ("images", "masks"):
        (root / folder / ".DS_Store").write_bytes(b"\x00\x01")
        (root / folder / "Thumbs.db").write_bytes(b"\x00")
        (root / folder / "._a.jpg").write_bytes(b"mac resource fork")
        (root / folder / "sub").mkdir()
    (root / "images" / "README.txt").write_text("notes")
    index = discover(root)
    assert index.stems == ["a", "b"] and index.problems == []
    assert [p.name for p in index.ignored] == ["README.txt", "sub", "sub"]


def test_same_stem_twice_is_a_problem(make_dataset: DatasetWriter) -> None:
    root = make_dataset("kv", ["a", "b"])
    write_rgb(root / "images" / "a.png", np.zeros((32, 40, 3), np.uint8))
    index = discover(root)
    assert index.stems == ["a", "b"]
    assert any("a.png" in p and "same name" in p for p in index.problems)


def test_images_and_masks_pair_across_formats(make_dataset: DatasetWriter) -> None:
    root = make_dataset("kv", ["a"])
    mask = root / "masks" / "a.jpg"
    mask.rename(mask.with_suffix(".png"))
    index = discover(root)
    assert index.pairs[0].mask.name == "a.png" and index.problems == []


def _as_file(root: Path) -> None:
    root.parent.mkdir(parents=True)
    root.write_text("x")


def _empty_layout(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "images" / "notes.txt").write_text("no images here")


UNUSABLE = {
    "missing": (lambda root: None, "no such folder"),
    "file": (_as_file, "not a folder"),
    "empty": (lambda root: root.mkdir(parents=True), "unknown dataset layout"),
    "empty-images": (_empty_layout, "holds no images"),
}


@pytest.mark.parametrize("case", sorted(UNUSABLE))
def test_unusable_folders_raise_naming_the_folder(tmp_path: Path, case: str) -> None:
    prepare, message = UNUSABLE[case]
    root = tmp_path / "ds" / "target"
    prepare(root)
    with pytest.raises(DataError, match=message) as info:
        discover(root)
    assert "target" in str(info.value)


def test_no_image_with_a_mask_raises(make_dataset: DatasetWriter) -> None:
    root = make_dataset("kv", ["a"])
    (root / "masks" / "a.jpg").rename(root / "masks" / "b.jpg")
    with pytest.raises(DataError, match=r"no image .* has a mask"):
        discover(root)


def test_layout_folder_names_match_loosely(make_dataset: DatasetWriter) -> None:
    root = make_dataset("clinic", ["1", "2"], layout="original-groundtruth")
    (root / "Ground Truth").rename(root / "ground_truth")
    (root / "Original").rename(root / "original")
    assert discover(root).layout == "original-groundtruth"
    assert LAYOUT_FOLDERS  # the writer covers every layout of the package
    from polypseg.data.layouts import LAYOUTS

    assert {layout.name for layout in LAYOUTS} == set(LAYOUT_FOLDERS)


def test_shared_kvasir(kvasir_dir: Path) -> None:
    index = discover(kvasir_dir)
    assert (index.name, index.layout, len(index.pairs)) == ("kvasir-seg", "images-masks", 898)
    assert index.problems == []


def test_shared_clinicdb(clinicdb_dir: Path) -> None:
    index = discover(clinicdb_dir)
    assert (index.name, len(index.pairs)) == ("cvc-clinicdb", 543)
    assert index.sequences == list(range(1, 27))
    assert {"133", "419", "480"}.isdisjoint(index.stems)
    assert index.problems == []


def test_layouts_load_neither_the_image_reader_nor_opencv() -> None:
    """``discover`` needs only the suffixes (``data.formats``): ``io`` imports ``layouts`` for
    ``Pair``, never the other way round, so no import circle and no OpenCV to list a folder."""
    import subprocess
    import sys

    code = ("import sys, polypseg.data.layouts; "
            "print(sorted(m for m in ('cv2', 'polypseg.data.io') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["[]"]
