"""Atomic writes: the target holds the old or the new content, never a part, and no temp is left."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from polypseg.atomic import atomic_path, atomic_write_json, atomic_write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_success_replaces_the_file_and_creates_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.json"
    atomic_write_json(target, {"x": 1})
    atomic_write_json(target, {"x": 2})
    assert target.read_text().strip().endswith("}")
    assert '"x": 2' in target.read_text()
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_mode_is_that_of_a_plain_open(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
