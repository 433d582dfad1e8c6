"""check_dataset: every problem found and named, statistics right, notes that do not fail."""

from __future__ import annotations

import json

import numpy as np
from data_helpers import CLINICDB_FRAMES, DatasetWriter, write_rgb

from polypseg.data.check import check_dataset
from polypseg.data.layouts import discover


def test_clean_dataset_passes_with_statistics(make_dataset: DatasetWriter) -> None:
    sizes = [(32, 40), (32, 40), (48, 64)]
    root = make_dataset("kv", ["a", "b", "c"], sizes=sizes, suffix=".png")
    (root / "kavsir_bboxes.json").write_text(json.dumps({"a": {}, "b": {}}))
    seen = []
    report = check_dataset(discover(root), progress=seen.append, workers=1)
    assert report.ok and report.problems == []
    assert seen == [1, 2, 3]
    assert report.sizes == {(40, 32): 2, (64, 48): 1}
    assert report.bbox_entries == 2
    stats = report.foreground_stats()
    assert 0.1 < stats["min"] <= stats["median"] <= stats["max"] < 0.3
    assert report.non_binary == []  # 0/255 PNG masks are binary


def test_every_problem_is_listed_with_its_file(make_dataset: DatasetWriter) -> None:
    root = make_dataset("kv", ["good", "corrupt", "nomask", "mismatch", "empty"])
    (root / "images" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (root / "masks" / "nomask.jpg").unlink()
    write_rgb(root / "masks" / "mismatch.jpg", np.zeros((20, 40), np.uint8))
    write_rgb(root / "masks" / "empty.jpg", np.zeros((32, 40), np.uint8))
    (root / "kavsir_bboxes.json").write_text("{not json")
    report = check_dataset(discover(root))
    assert not report.ok
    problems = report.problems
    assert len(problems) == 5, problems
    text = "\n".join(problems)
    assert "nomask.jpg: image has no mask" in text
    assert "corrupt.jpg: not a readable image" in text
    assert "images/mismatch.jpg is 40x32 but mask" in text and "masks/mismatch.jpg is 40x20" in text
    assert "empty.jpg: empty mask" in text
    assert "kavsir_bboxes.json: unreadable" in text
    assert len(report.foreground) == 2  # good and empty were read


def test_non_binary_masks_are_noted_with_their_values(make_dataset: DatasetWriter) -> None:
    root = make_dataset("kv", ["soft", "plain"], suffix=".png")
    soft = np.zeros((32, 40), np.uint8)
    soft[:, :10], soft[:, 10:20], soft[:, 20:30] = 100, 150, 255
    write_rgb(root / "masks" / "soft.png", soft)
    report = check_dataset(discover(root))
    assert report.ok  # thresholded, not a failure
    assert [m.path.name for m in report.suspicious_masks()] == ["soft.png"]
    note = report.suspicious_masks()[0]
    assert (note.distinct, note.low, note.high) == (4, 0, 255)
    assert abs(note.uncertain - 0.5) < 1e-9  # 100 and 150 lie in 64-191
    assert "4 values from 0 to 255, 50.0% of pixels in 64-191" in note.describe()
    assert abs(report.foreground[1] - 0.5) < 1e-9  # 150 and 255 count as polyp


def test_clinicdb_missing_frames_and_sequences(make_dataset: DatasetWriter) -> None:
    root = make_dataset("clinic", CLINICDB_FRAMES, layout="original-groundtruth")
    report = check_dataset(discover(root))
    assert report.ok and report.index.sequences == [1, 2, 3, 4, 5]
    missing = report.missing_frames()
    assert 3 in missing and 1 not in missing and 104 not in missing and len(missing) == 103 - 12
