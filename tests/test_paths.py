"""Portable paths: what result files record, where a dataset is found by its key, and where a
command's default output goes when the run lies in the committed results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from polypseg.paths import (
    dataset_folder,
    dataset_key,
    default_output,
    portable,
    portable_tree,
)

REPO = Path(__file__).resolve().parents[1]


def test_portable_is_relative_under_or_beside_the_anchor() -> None:
    assert portable("/work/study/results/cpu/runs/a", "/work/study") == "results/cpu/runs/a"
    assert portable("/work/study/../shared/data/Kvasir-SEG", "/work/study") == \
        "../shared/data/Kvasir-SEG"
    assert portable("/tmp/x/run", "/work/study") == "/tmp/x/run"  # elsewhere: as given
    assert portable("runs/a", "/work/study") == "runs/a"  # relative already
    assert portable("/work/other", "/work") == "/work/other"  # the anchor's parent is /


def test_portable_tree_rewrites_only_absolute_path_strings() -> None:
    doc = {"run": "/w/p/results/r", "n": 3, "note": "a / b", "list": ["/w/shared/d", "x"],
           "nested": {"split": {"source": "/w/p/s.json"}}, "none": None}
    assert portable_tree(doc, "/w/p") == {
        "run": "results/r", "n": 3, "note": "a / b", "list": ["../shared/d", "x"],
        "nested": {"split": {"source": "s.json"}}, "none": None}


def test_datasets_are_found_by_key_beside_the_clone(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    clone = tmp_path / "clone"
    result = clone / "results" / "cpu" / "runs" / "a" / "sweep.json"
    result.parent.mkdir(parents=True)
    result.write_text("{}")
    (tmp_path / "shared" / "data" / "CVC-ClinicDB").mkdir(parents=True)
    (tmp_path / "elsewhere" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "elsewhere" / "deeper")  # ../shared is not beside it
    assert dataset_key("kvasir-seg") == "kvasir" and dataset_key("CVC-ClinicDB") == "cvc"
    assert dataset_key("nope") is None
    found = dataset_folder("cvc", result)
    assert found is not None
    assert found.resolve() == (tmp_path / "shared" / "data" / "CVC-ClinicDB").resolve()
    assert dataset_folder("cvc-clinicdb", result) is not None
    assert dataset_folder("kvasir", result) is None  # not there


def test_default_output_of_a_committed_run_is_outside_results() -> None:
    assert default_output("results/models/kvasir-p4/eval") == Path("out/models/kvasir-p4/eval")
    assert default_output("/x/results/cpu/runs/a/sweep") == Path("out/cpu/runs/a/sweep")
    assert default_output("runs/p4/eval") == Path("runs/p4/eval")
    assert default_output("/x/results") == Path("/x/results")  # only what lies below it


def test_the_rewrite_script_makes_results_portable_and_is_idempotent(tmp_path: Path) -> None:
    results = tmp_path / "results" / "runs" / "a"
    results.mkdir(parents=True)
    doc = {"run": "/old/clone/results/runs/a", "data": "/old/clone/../shared/data/Kvasir-SEG",
           "size": 96, "text": "plain"}
    (results / "test.json").write_text(json.dumps(doc, indent=2) + "\n")
    (results / "worker.log").write_text(
        "/old/clone/.venv/lib/x.py:80: UserWarning\nwrote /old/clone/results/runs/a/t.json\n")
    script = [sys.executable, str(REPO / "scripts" / "portable_results.py"),
              str(tmp_path / "results")]
    check = subprocess.run([*script, "--check"], capture_output=True, text=True)
    assert check.returncode == 1 and "2 files record absolute paths" in check.stdout
    assert subprocess.run(script, capture_output=True, text=True).returncode == 0
    assert json.loads((results / "test.json").read_text()) == {
        "run": "results/runs/a", "data": "../shared/data/Kvasir-SEG", "size": 96,
        "text": "plain"}
    assert (results / "worker.log").read_text() == (
        ".venv/lib/x.py:80: UserWarning\nwrote results/runs/a/t.json\n")
    again = subprocess.run([*script, "--check"], capture_output=True, text=True)
    assert again.returncode == 0 and "0 files" in again.stdout


def test_committed_results_record_no_absolute_path() -> None:
    found = subprocess.run([sys.executable, str(REPO / "scripts" / "portable_results.py"),
                            str(REPO / "results"), "--check"], capture_output=True, text=True)
    assert found.returncode == 0, found.stdout
