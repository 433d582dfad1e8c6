"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename.

A reader (or a resumed run after Ctrl-C or a crash) sees either the old file or the new one,
never a half-written file. Files and folders get the mode a plain ``open()`` / ``mkdir()``
would give them (``0666`` / ``0777`` less the umask), whatever the writing library does, so an
artifact written by one user can be read by another (e.g. a container's unprivileged user)
whenever the umask allows it.

Failures to write (a read-only file system, a full disk, ``--out`` naming a file or lying
below one) become one :class:`OutputError` line naming the path and the cause
(:func:`write_error`), the temporary file removed; :func:`check_output_folder` says the same
before a command starts its work.

Temporary names are ``.NAME.PID.XXXXXXXX.tmp`` (``PID``: the writing process), so that
:func:`remove_stale_temps` can tell the leftovers of a killed writer from a write in progress.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from polypseg.errors import PolypsegError

#: ``.NAME.PID.XXXXXXXX.tmp`` (``PID.`` absent in older versions): NAME may hold dots, the
#: random part never does.
_TEMP_NAME = re.compile(r"^\.(?P<name>.+?)\.(?:(?P<pid>\d+)\.)?[A-Za-z0-9_]+\.tmp$")
_TEMP_TAIL = re.compile(r"^(?:(?P<pid>\d+)\.)?[A-Za-z0-9_]+\.tmp$")
_UMASK_LOCK = threading.Lock()
#: Temporary paths this process is writing right now (never stale, whatever their PID says).
_LIVE_TEMPS: set[str] = set()


class OutputError(PolypsegError):
    """A file or folder that cannot be written where the user asked."""


#: errno values that mean "this place cannot be written", not a bug.
WRITE_ERRNOS = frozenset({errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR,
                          errno.EEXIST, errno.EACCES, errno.EPERM, errno.EFBIG,
                          errno.ENAMETOOLONG, errno.EIO})  # fmt: skip
#: What libraries that wrap an OS error in their own (safetensors: "IoError(Os { code: 28,
#: kind: StorageFull, message: \"No space left on device\" })") say, and the cause to print.
_WRITE_FAILURE_WORDS = (("No space left on device", "no space left on device"),
                        ("StorageFull", "no space left on device"),
                        ("Read-only file system", "read-only file system"),
                        ("ReadOnlyFilesystem", "read-only file system"))  # fmt: skip
#: What torch's archive writer says when a write fails (a full disk, mostly): no errno.
_TORCH_WRITE_FAILURES = ("inline_container.cc", "PytorchStreamWriter failed", "file write failed")


def _reason(err: OSError) -> str:
    if err.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = Path(err.filename) if err.filename else None
        while blocker is not None and not blocker.exists() and blocker != blocker.parent:
            blocker = blocker.parent  # ENOTDIR names the path below the file
        if blocker is not None and blocker.exists() and not blocker.is_dir():
            return f"{blocker} is a file, not a folder"
        return "a file is in the way (not a folder)"
    return (err.strerror or str(err)).lower()


def write_error(path: str | os.PathLike[str], err: BaseException) -> OutputError | None:
    """The one-line :class:`OutputError` for ``err`` raised while writing ``path``, or None
    when ``err`` is not a failure to write (a bug, bad data...)."""
    if isinstance(err, OutputError):
        return err
    if isinstance(err, OSError) and err.errno in WRITE_ERRNOS:
        return OutputError(f"cannot write {path}: {_reason(err)}")
    text = str(err)
    for words, cause in _WRITE_FAILURE_WORDS:  # libraries that wrap the OS error in text
        if words in text:
            return OutputError(f"cannot write {path}: {cause}")
    if isinstance(err, RuntimeError) and any(s in text for s in _TORCH_WRITE_FAILURES):
        folder = Path(path).parent
        try:
            free = shutil.disk_usage(folder if folder.exists() else Path.cwd()).free
        except OSError:
            free = None
        cause = "no space left on device" if free is not None and free < 64 << 20 else (
            "the write failed (full disk or I/O error)")  # fmt: skip
        return OutputError(f"cannot write {path}: {cause}")
    return None


def check_output_folder(
    path: str | os.PathLike[str], option: str = "--out", *, replace: bool = True
) -> None:
    """Check, before any work, that the folder ``path`` can be made and written: it is not a
    file, no folder above it is a file, and the nearest existing one takes a new file (a
    read-only file system or missing permission is found here). Writes nothing that stays.

    ``replace=False``: the folder must not exist yet either (or be empty). Raises
    :class:`OutputError` naming ``option``, the path and the cause.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} {path}: a file of that name is in the way (not a folder)")
    if not replace and path.is_dir() and any(path.iterdir()):
        raise OutputError(f"{option} {path} already exists (use --overwrite to replace it)")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{option} {path}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".polypseg-write-check.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(f"{option} {path}: cannot write in {existing}: {_reason(err)}") from None


def current_umask() -> int:
    """The process's umask, read from ``/proc/self/status`` where possible (no change to it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:  # elsewhere: set and restore (a restrictive value meanwhile, never 0)
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike[str]) -> None:
    """Give ``path`` the mode ``open()`` (files: ``0666``) or ``mkdir()`` (folders: ``0777``)
    would give it under the current umask; the contents of a folder are left as they are."""
    base = 0o777 if Path(path).is_dir() else 0o666
    os.chmod(path, base & ~current_umask())


def temp_prefix(name: str) -> str:
    """Prefix of this process's temporary files for a target called ``name``."""
    return f".{name}.{os.getpid()}."


@contextlib.contextmanager
def live_temp(path: Path) -> Iterator[Path]:
    """Mark ``path`` as being written by this process while the block runs."""
    key = os.fspath(path)
    _LIVE_TEMPS.add(key)
    try:
        yield path
    finally:
        _LIVE_TEMPS.discard(key)


def _writer_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process's live temps are in _LIVE_TEMPS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    return True


def stale_temps(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Temporary files and folders in ``folder`` (for target ``name``, or any) whose writer is
    gone: a process killed between creating them and renaming or removing them. Temporaries
    without a PID come from older versions and count as stale."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(folder.iterdir()):
        if name is None:
            match = _TEMP_NAME.match(entry.name)
        elif entry.name.startswith(f".{name}."):
            match = _TEMP_TAIL.match(entry.name[len(name) + 2 :])
        else:
            continue
        if match is None:
            continue
        if os.fspath(entry) in _LIVE_TEMPS:
            continue
        if match["pid"] is not None and _writer_alive(int(match["pid"])):
            continue
        found.append(entry)
    return found


def remove_stale_temps(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Remove :func:`stale_temps` (files and folders); return what was removed."""
    removed = []
    for entry in stale_temps(folder, name):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        removed.append(entry)
    return removed


def make_temp_dir(target: str | os.PathLike[str]) -> Path:
    """A new empty folder beside ``target`` (``.NAME.PID.XXXXXXXX.tmp``, umask mode), to be
    filled and then renamed to ``target``; the caller removes it on failure. It never counts
    as stale for this process."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(
            tempfile.mkdtemp(prefix=temp_prefix(target.name), suffix=".tmp", dir=target.parent)
        )
    except OSError as err:
        raise (write_error(target, err) or err) from None
    _LIVE_TEMPS.add(os.fspath(tmp))
    apply_umask(tmp)  # mkdtemp creates 0700
    return tmp


def _sync_folder(folder: Path) -> None:
    """fsync ``folder`` so that a rename into it survives a power loss (POSIX; a no-op where
    folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not sync folders; the rename itself is still atomic
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left untouched. The file gets
    the mode of a plain ``open()`` (``0666`` less the umask) after the writer has run, since
    some libraries (safetensors) create their file anew with mode ``0600``.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=temp_prefix(target.name), suffix=".tmp", dir=target.parent
        )
    except OSError as err:
        raise (write_error(target, err) or err) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with live_temp(tmp):
            yield tmp
            apply_umask(tmp)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, target)
            _sync_folder(target.parent)
    except Exception as err:  # OSError, torch's RuntimeError, safetensors' own error...
        failed = write_error(target, err)
        if failed is None:
            raise
        raise failed from err
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_write_with(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` (e.g. a library's save function) and move the result atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def atomic_write_report(stem: str | os.PathLike[str], doc: Any, markdown: str) -> list[Path]:
    """A result as its two files: ``STEM.json`` (``doc``) and ``STEM.md`` (``markdown``),
    each written atomically; returns both paths."""
    stem = Path(stem)
    written = [stem.with_suffix(".json"), stem.with_suffix(".md")]
    atomic_write_json(written[0], doc)
    atomic_write_text(written[1], markdown)
    return written
