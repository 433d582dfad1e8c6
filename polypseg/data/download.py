"""``polypseg data download``: fetch a dataset's official archive, verify it, unpack it safely.

The archive is downloaded (or a local copy read) into a hidden temporary folder inside
``dest``, its SHA-256 computed and compared with the known one (or with ``--sha256``), unpacked
there, checked to hold a dataset layout, and only then moved to ``dest/<Dataset>``. Any failure,
Ctrl-C included, removes the temporary folder: nothing half-done is left behind.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from polypseg.data import registry
from polypseg.data.layouts import DatasetIndex, canonical_dataset, discover, find_dataset_root
from polypseg.errors import DataError
from polypseg.hashing import file_sha256

#: Seconds to wait for a connection (and for each read) before giving up.
DEFAULT_TIMEOUT = 10.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from. ``url`` None: no stable direct link, the user fetches it.
    ``sha256`` None: no checksum is recorded here, the computed one is reported instead."""

    name: str
    folder: str
    url: str | None
    sha256: str | None
    page: str
    terms: str


#: Where each dataset of :mod:`polypseg.data.registry` comes from.
SOURCES: dict[str, Source] = {
    record.name: Source(
        name=record.name,
        folder=record.title,
        url=record.url,
        sha256=None,  # none is published (Simula's Kvasir-SEG neither); the computed one is printed
        page=record.source,
        terms=record.terms,
    )
    for record in registry.DATASETS
}


@dataclass(frozen=True)
class DownloadResult:
    """Where the dataset went, the archive's SHA-256 and whether it matched a known one."""

    path: Path
    sha256: str
    verified: bool
    index: DatasetIndex


Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None)


def _fetch(url: str, target: Path, timeout: float, progress: Progress | None) -> None:
    """Stream ``url`` (http, https or file) into ``target``; DataError when unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise DataError(
            f"cannot download {url}: {reason} (offline? fetch the archive another way and pass "
            "--archive FILE)"
        ) from err


def _inside(base: Path, member: str) -> bool:
    target = (base / member).resolve()
    return target == base or base in target.parents


def _extract(archive: Path, into: Path) -> None:
    """Unpack a zip or tar archive into ``into``; DataError when corrupt, unsafe or other."""
    base = into.resolve()
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                unsafe = [n for n in zf.namelist() if not _inside(base, n)]
                if unsafe:
                    raise DataError(f"{archive}: unsafe path in archive: {unsafe[0]}")
                zf.extractall(base)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                tf.extractall(base, filter="data")
        else:
            raise DataError(
                f"{archive}: not a zip or tar archive (a .rar must be extracted by hand, then "
                "run `polypseg data check` on the folder)"
            )
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"{archive}: corrupt or unreadable archive ({err})") from err


def _no_url_message(source: Source) -> str:
    return (
        f"{source.name} has no stable direct download link: get the archive from {source.page} "
        f"(registration may be needed), then run `polypseg data download {source.name} "
        "--archive FILE`"
    )


def download_dataset(
    name: str,
    dest: str | os.PathLike[str] = "data",
    *,
    url: str | None = None,
    archive: str | os.PathLike[str] | None = None,
    sha256: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress | None = None,
) -> DownloadResult:
    """Install dataset ``name`` as ``dest/<Folder>`` from its official archive, a ``url`` or a
    local ``archive``, verifying the SHA-256 when one is known or given.

    Raises DataError (leaving nothing behind) when the target exists, the download fails, the
    checksum differs, or the archive is corrupt or holds no dataset layout.

    Args:
        name: the dataset's registry name.
        dest: the folder that receives ``<Folder>/``.
        url: download from this URL (http, https, file); ``None``: the registry's.
        archive: a zip/tar archive on disk, used instead of a download.
        sha256: the archive's expected SHA-256 (hex); ``None``: the registry's, if it records one
            (else the computed one is only reported).
        timeout: seconds to wait for the server.
        progress: called as ``progress(bytes so far, total bytes or None)`` while downloading;
            ``None``: silent.
    """
    source = SOURCES[canonical_dataset(name)]
    expected = (sha256 or source.sha256 or "").strip().lower() or None
    if expected is not None and not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise DataError(f"--sha256 must be 64 hexadecimal digits, got {sha256!r}")
    link = url or source.url
    if archive is None and link is None:
        raise DataError(_no_url_message(source))
    origin = str(archive) if archive is not None else str(link)
    dest_dir = Path(dest).expanduser()
    target = dest_dir / source.folder
    if target.exists():
        raise DataError(f"{target}: already exists; remove it or choose another --dest")
    created_dest = not dest_dir.exists()
    dest_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{source.folder}-download-", dir=dest_dir))
    try:
        if archive is not None:
            archive_path = Path(archive).expanduser()
            if not archive_path.is_file():
                raise DataError(f"{archive_path}: no such archive file")
        else:
            archive_path = work / "archive"
            _fetch(origin, archive_path, timeout, progress)
        digest = file_sha256(archive_path)
        if expected is not None and digest != expected:
            raise DataError(
                f"{origin}: SHA-256 mismatch: expected {expected}, "
                f"got {digest} (incomplete download or a different file)"
            )
        unpacked = work / "unpacked"
        unpacked.mkdir()
        _extract(archive_path, unpacked)
        root = find_dataset_root(unpacked, depth=3)
        if root is None:
            raise DataError(f"{origin}: holds no {source.name} dataset layout")
        discover(root, dataset=source.name)  # raises if it holds no usable pair
        try:
            os.replace(root, target)
        except OSError as err:
            raise DataError(f"{target}: cannot move the dataset into place ({err})") from err
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if created_dest:
            shutil.rmtree(dest_dir, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    index = discover(target, dataset=source.name)
    return DownloadResult(target, digest, expected is not None, index)
