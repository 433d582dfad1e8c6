"""Atomic writes: the target holds the old or the new content, never a part, and no temp is left."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from polypseg.atomic import (
    OutputError,
    atomic_path,
    atomic_write_json,
    atomic_write_report,
    atomic_write_text,
    atomic_write_with,
    check_output_folder,
    current_umask,
    make_temp_dir,
    remove_stale_temps,
    stale_temps,
)
from polypseg.errors import PolypsegError


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


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_mode_follows_the_umask_even_when_the_writer_recreates_the_file(
    tmp_path: Path, umask: int, mode: int
) -> None:
    """safetensors' save_file replaces the file with a 0600 one; the umask must still rule."""

    def recreate_0600(path: Path) -> None:
        path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"weights")
        os.close(fd)

    previous = os.umask(umask)
    try:
        atomic_write_with(tmp_path / "w.safetensors", recreate_0600)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "w.safetensors").stat().st_mode) == mode


def test_current_umask_reads_without_changing(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        assert current_umask() == 0o027
    finally:
        os.umask(previous)


def dead_pid() -> int:
    """The PID of a process that has exited."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = dead_pid()
    stale_file = tmp_path / f".best.safetensors.{dead}.abc123_x.tmp"
    stale_file.write_bytes(b"half")
    legacy = tmp_path / ".last.json.k2j4h5g6.tmp"  # older versions wrote no PID
    legacy.write_text("{")
    stale_dir = tmp_path / f".p4-onnx.{dead}.q1w2e3r4.tmp"
    stale_dir.mkdir()
    (stale_dir / "model.onnx").write_bytes(b"x")
    alive = tmp_path / f".metrics.csv.{os.getppid()}.abcdefgh.tmp"  # a writer still running
    alive.write_text("epoch")
    keep = [tmp_path / "best.json", tmp_path / ".hidden", tmp_path / "notes.tmp"]
    for path in keep:
        path.write_text("x")
    assert set(stale_temps(tmp_path, "best.safetensors")) == {stale_file}
    removed = remove_stale_temps(tmp_path)
    assert set(removed) == {stale_file, legacy, stale_dir}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [alive.name, *(p.name for p in keep)]
    )


def test_this_process_keeps_its_own_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    with atomic_path(target) as tmp:
        assert tmp.name.startswith(f".out.json.{os.getpid()}.")
        assert remove_stale_temps(tmp_path) == [] and tmp.exists()
        tmp.write_text("{}")
    folder = make_temp_dir(tmp_path / "export")
    assert remove_stale_temps(tmp_path) == [] and folder.is_dir()
    # a leftover with this PID that this process did not create: a reused PID, stale
    reused = tmp_path / f".other.{os.getpid()}.zzzzzzzz.tmp"
    reused.write_text("x")
    assert remove_stale_temps(tmp_path) == [reused]


def test_the_folder_is_synced_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rename is durable only once the folder holding it is synced: after the file's own
    fsync, the folder is synced too."""
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        synced.append("folder" if stat.S_ISDIR(mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic_write_text(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert synced == ["file", "folder"]


def test_a_report_is_its_json_and_its_markdown(tmp_path: Path) -> None:
    written = atomic_write_report(tmp_path / "speed-cpu", {"ratio": 1.5}, "# Speed\n")
    assert written == [tmp_path / "speed-cpu.json", tmp_path / "speed-cpu.md"]
    assert json.loads(written[0].read_text()) == {"ratio": 1.5}
    assert written[1].read_text() == "# Speed\n"


# -- failures to write: one line naming the path and the cause --------------------------------
@pytest.mark.parametrize(
    ("code", "cause"),
    [(errno.ENOSPC, "no space left on device"), (errno.EROFS, "read-only file system")],
)
def test_a_disk_that_refuses_the_write_is_one_line_and_leaves_nothing(
    tmp_path: Path, code: int, cause: str
) -> None:
    target = tmp_path / "run" / "checkpoints" / "last.pt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"old")

    def refusing(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(code, os.strerror(code), str(tmp))

    with pytest.raises(OutputError) as failed:
        atomic_write_with(target, refusing)
    assert str(failed.value) == f"cannot write {target}: {cause}"
    assert isinstance(failed.value, PolypsegError)  # the CLI prints it as one line, exit 2
    assert target.read_bytes() == b"old" and sorted(target.parent.iterdir()) == [target]


def test_torch_save_onto_a_full_disk_names_the_file_and_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch's archive writer has no errno: 'enforce fail at inline_container.cc:672'."""
    import torch

    from polypseg.training import state

    def full_disk(_obj: object, f: object, *args: object, **kwargs: object) -> None:
        Path(f).write_bytes(b"PK\x03\x04 half an archive")  # type: ignore[arg-type]
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    full = shutil._ntuple_diskusage(10**9, 10**9, 0)  # type: ignore[attr-defined]
    monkeypatch.setattr("polypseg.atomic.shutil.disk_usage", lambda _: full)
    target = tmp_path / "last.pt"
    with pytest.raises(OutputError) as failed:
        state.save_resume_state(target, {"epoch": 1})
    assert str(failed.value) == f"cannot write {target}: no space left on device"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["file", "below-file"])
def test_an_output_folder_that_cannot_be_is_found_before_any_work(
    tmp_path: Path, where: str
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    out = blocker if where == "file" else blocker / "a" / "b"
    with pytest.raises(OutputError, match=f"--out {out}: "):
        check_output_folder(out)
    with pytest.raises(OutputError, match=f"cannot write .*: {blocker} is a file, not a folder"):
        atomic_write_text(blocker / "x.txt", "y")
    check_output_folder(tmp_path / "new" / "deeper")  # fine: nothing made, nothing left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_a_read_only_place_is_found_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("polypseg.atomic.tempfile.mkstemp", read_only)
    with pytest.raises(OutputError, match=f"--out {tmp_path / 'o'}: cannot write in {tmp_path}"):
        check_output_folder(tmp_path / "o")


def test_a_library_error_that_wraps_a_full_disk_is_one_line(tmp_path: Path) -> None:
    """safetensors raises its own error type, the OS error only in its text."""
    safetensor_error = type("SafetensorError", (Exception,), {})
    target = tmp_path / "best.safetensors"

    def full(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise safetensor_error(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No '
            'space left on device" })'
        )

    with pytest.raises(OutputError) as failed:
        atomic_write_with(target, full)
    assert str(failed.value) == f"cannot write {target}: no space left on device"
    assert list(tmp_path.iterdir()) == []
