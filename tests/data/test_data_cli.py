"""``polypseg data ...`` through polypseg.cli.main: exit codes, output, no tracebacks."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from data_helpers import DatasetWriter, write_rgb

from polypseg.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["data", *args])
    out, err = capsys.readouterr()
    text = out + err
    assert "Traceback" not in text
    return code, text


def test_check_clean_folder(capsys, make_dataset: DatasetWriter) -> None:
    root = make_dataset("kv", ["a", "b", "c"], sizes=[(32, 40), (32, 40), (20, 30)])
    code, text = run(capsys, "check", str(root))
    assert code == 0
    assert "kvasir-seg: 3 images, no problems" in text
    assert "40x32" in text and "30x20" in text  # size histogram
    assert "images-masks" in text


def test_check_lists_every_problem_and_fails(capsys, make_dataset: DatasetWriter) -> None:
    root = make_dataset("kv", ["good", "broken", "lonely", "odd"])
    (root / "images" / "broken.jpg").write_bytes(b"not an image")
    (root / "masks" / "lonely.jpg").unlink()
    write_rgb(root / "masks" / "odd.jpg", np.zeros((10, 10), np.uint8))
    (root / "images" / "README.txt").write_text("notes")
    code, text = run(capsys, "check", str(root))
    assert code == 1
    assert "3 problem(s)" in text
    for name in ("broken.jpg", "lonely.jpg", "odd.jpg"):
        assert name in text
    assert "ignored" in text and "README.txt" in text


def test_check_missing_folder_is_a_clean_error(capsys, tmp_path: Path) -> None:
    code, text = run(capsys, "check", str(tmp_path / "nope"))
    assert code == 2 and "error:" in text and "nope" in text


def test_check_shared_kvasir(capsys, kvasir_dir: Path) -> None:
    code, text = run(capsys, "check", str(kvasir_dir))
    assert code == 0
    assert "kvasir-seg: 898 images, no problems" in text


def test_check_shared_clinicdb(capsys, clinicdb_dir: Path) -> None:
    code, text = run(capsys, "check", str(clinicdb_dir))
    assert code == 0
    assert "cvc-clinicdb: 543 images in 26 sequences, no problems" in text
    assert "133, 419, 480" in text


def test_split_writes_reuses_and_protects(capsys, make_dataset: DatasetWriter, tmp_path) -> None:
    root = make_dataset("kv", [f"s{i}" for i in range(20)])
    out = tmp_path / "splits" / "kv.json"
    code, text = run(capsys, "split", str(root), "--out", str(out), "--seed", "3")
    assert code == 0 and "written" in text
    data = json.loads(out.read_text())
    assert data["seed"] == 3 and data["counts"] == {"train": 16, "val": 2, "test": 2}
    code, text = run(capsys, "split", str(root), "--out", str(out), "--seed", "3")
    assert code == 0 and "unchanged" in text
    code, text = run(capsys, "split", str(root), "--out", str(out), "--seed", "4")
    assert code == 2 and "--force" in text
    assert json.loads(out.read_text())["seed"] == 3
    code, _ = run(capsys, "split", str(root), "--out", str(out), "--seed", "4", "--force")
    assert code == 0 and json.loads(out.read_text())["seed"] == 4


def test_split_default_path_folds_and_combined(
    capsys, make_dataset: DatasetWriter, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    kv = make_dataset("kv", [f"s{i}" for i in range(10)])
    clinic = make_dataset("clinic", ["1", "2", "30", "31", "55", "70", "80"])
    assert run(capsys, "split", str(kv))[0] == 0
    assert (tmp_path / "splits" / "kvasir-seg-seed0.json").is_file()
    code, text = run(capsys, "split", str(clinic), "--folds", "3")
    assert code == 0 and "fold 2" in text
    assert sorted(p.name for p in (tmp_path / "splits").glob("cvc-clinicdb-seed0-k3-*")) == [
        f"cvc-clinicdb-seed0-k3-fold{f}.json" for f in range(3)
    ]
    code, text = run(capsys, "split", str(kv), str(clinic))
    assert code == 0
    combined = json.loads((tmp_path / "splits" / "kvasir-seg+cvc-clinicdb-seed0.json").read_text())
    assert combined["dataset"] == "kvasir-seg+cvc-clinicdb"
    code, text = run(capsys, "split", str(kv), "--dataset", "clinicdb")
    assert code == 2 and "no video sequence" in text


def test_download_errors_are_clean(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04broken")
    dest = tmp_path / "data"
    code, text = run(capsys, "download", "kvasir-seg", "--dest", str(dest), "--archive", str(bad))
    assert code == 2 and "bad.zip" in text and not dest.exists()
    code, text = run(capsys, "download", "cvc-clinicdb", "--dest", str(dest))
    assert code == 2 and "polyp.grand-challenge.org" in text


def test_download_local_archive(capsys, make_dataset: DatasetWriter, tmp_path: Path) -> None:
    root = make_dataset("src", ["a", "b"])
    archive = tmp_path / "k.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in root.rglob("*.jpg"):
            zf.write(path, f"Kvasir-SEG/{path.relative_to(root)}")
    code, text = run(capsys, "download", "kvasir-seg", "--dest", str(tmp_path / "d"),
                     "--archive", str(archive))  # fmt: skip
    assert code == 0 and "not verified" in text and "kvasir-seg: 2 images" in text


def test_preview_writes_png(capsys, make_dataset: DatasetWriter, tmp_path: Path) -> None:
    root = make_dataset("kv", list("abcd"))
    out = tmp_path / "grid.png"
    code, text = run(capsys, "preview", str(root), "--out", str(out), "--n", "3", "--tile", "32")
    assert code == 0 and "3 of 4 images" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, text = run(capsys, "preview", str(root), "--split-file", str(tmp_path / "none.json"))
    assert code == 2 and "none.json" in text
