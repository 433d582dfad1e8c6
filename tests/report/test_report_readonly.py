"""Commands on a run under a committed ``results/`` folder leave it as it was: ``evaluate``,
``sweep``, ``inspect`` and ``report`` write their default output elsewhere."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from polypseg.cli import main


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_commands_on_a_committed_bundle_write_outside_results(
        demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "results" / "models" / "p4"
    shutil.copytree(demo / "p4", bundle)
    before = _snapshot(tmp_path / "results")
    config = (bundle / "config.json").read_text()
    monkeypatch.chdir(tmp_path)
    args: list[str] = []  # the dataset the run recorded (absolute: a temporary folder)
    assert main(["evaluate", str(bundle), *args]) == 0
    assert main(["sweep", str(bundle), "--angles", "0,45", *args]) == 0
    assert main(["inspect", str(bundle)]) == 0
    assert main(["report", str(bundle), "--gallery", "1"]) == 0
    assert _snapshot(tmp_path / "results") == before, "a command wrote into results/"
    assert (tmp_path / "out" / "models" / "p4" / "eval" / "test.json").is_file()
    assert (tmp_path / "out" / "models" / "p4" / "sweep" / "sweep.json").is_file()
    assert (tmp_path / "out" / "models" / "p4" / "symmetry.json").is_file()
    assert config == (bundle / "config.json").read_text()
