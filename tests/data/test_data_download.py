"""download_dataset offline: local archives and file:// URLs, checksum, corrupt and unsafe
archives, unreachable servers; nothing is ever left behind after a failure."""

from __future__ import annotations

import hashlib
import socket
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from data_helpers import CLINICDB_FRAMES, DatasetWriter

from polypseg.data.download import download_dataset
from polypseg.errors import DataError


def _zip(folder: Path, archive: Path, prefix: str) -> Path:
    """Zip ``folder`` with its files under ``prefix/`` (as the official archives do)."""
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, f"{prefix}/{path.relative_to(folder)}")
        zf.writestr("__MACOSX/._junk", b"")
    return archive


@pytest.fixture
def kvasir_zip(make_dataset: DatasetWriter, tmp_path: Path) -> Path:
    root = make_dataset("src", ["a", "b", "c"])
    return _zip(root, tmp_path / "kvasir-seg.zip", "Kvasir-SEG")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_local_archive_verified_and_installed(kvasir_zip: Path, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    result = download_dataset("kvasir-seg", dest, archive=kvasir_zip, sha256=_sha(kvasir_zip))
    assert result.verified and result.sha256 == _sha(kvasir_zip)
    assert result.path == dest / "Kvasir-SEG"
    assert sorted(p.name for p in dest.iterdir()) == ["Kvasir-SEG"]  # no temporary folder
    assert len(result.index.pairs) == 3 and result.index.name == "kvasir-seg"
    assert kvasir_zip.exists()  # the user's archive is kept


def test_unknown_checksum_is_reported_not_verified(kvasir_zip: Path, tmp_path: Path) -> None:
    result = download_dataset("kvasir-seg", tmp_path / "data", url=kvasir_zip.as_uri())
    assert not result.verified and result.sha256 == _sha(kvasir_zip)


def test_checksum_mismatch_leaves_nothing(kvasir_zip: Path, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    dest.mkdir()
    with pytest.raises(DataError, match="SHA-256 mismatch") as info:
        download_dataset("kvasir-seg", dest, url=kvasir_zip.as_uri(), sha256="0" * 64)
    assert _sha(kvasir_zip) in str(info.value)
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_archive_leaves_nothing(kvasir_zip: Path, tmp_path: Path, damage: str) -> None:
    data = kvasir_zip.read_bytes()
    bad = tmp_path / "bad.zip"
    if damage == "truncated":
        bad.write_bytes(data[: len(data) // 2] + data[-200:])  # directory intact, members cut
    else:
        bad.write_bytes(b"PK\x03\x04" + b"\x00" * 300)
    dest = tmp_path / "fresh" / "data"
    with pytest.raises(DataError, match=r"bad\.zip"):
        download_dataset("kvasir-seg", dest, archive=bad)
    assert not dest.exists()  # created for the download, removed with it


@pytest.mark.parametrize(
    ("member", "message"),
    [("../escape.txt", "unsafe path"), ("docs/readme.txt", "holds no kvasir-seg dataset layout")],
    ids=["path-traversal", "no-dataset"],
)
def test_unusable_archive_contents(tmp_path: Path, member: str, message: str) -> None:
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(member, b"x")
    with pytest.raises(DataError, match=message):
        download_dataset("kvasir-seg", tmp_path / "data", archive=archive)
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "data").exists()


def test_clinicdb_tar_with_tif_layout(make_dataset: DatasetWriter, tmp_path: Path) -> None:
    root = make_dataset("clinic", CLINICDB_FRAMES, layout="original-groundtruth")
    archive = tmp_path / "CVC-ClinicDB.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(root, arcname="CVC-ClinicDB")
    result = download_dataset("CVC-ClinicDB", tmp_path / "data", archive=archive)
    assert result.path == tmp_path / "data" / "CVC-ClinicDB"
    assert result.index.sequences == [1, 2, 3, 4, 5]
    assert result.index.layout == "original-groundtruth"


def test_clinicdb_without_archive_explains_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no stable direct download link.*--archive"):
        download_dataset("cvc-clinicdb", tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_existing_target_refused(kvasir_zip: Path, tmp_path: Path) -> None:
    (tmp_path / "data" / "Kvasir-SEG").mkdir(parents=True)
    with pytest.raises(DataError, match="already exists"):
        download_dataset("kvasir-seg", tmp_path / "data", archive=kvasir_zip)


def test_unreachable_server_fails_at_once_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One connection attempt, no retry loop, no sleeping (no wall clock is measured)."""
    import polypseg.data.download as download

    attempts: list[str] = []
    real_urlopen = download.urllib.request.urlopen

    def counting_urlopen(url: str, *args: Any, **kwargs: Any) -> Any:
        attempts.append(url)
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(download.urllib.request, "urlopen", counting_urlopen)
    monkeypatch.setattr(time, "sleep", lambda seconds: pytest.fail(f"slept {seconds} s"))
    with socket.socket() as sock:  # a port that was free a moment ago: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/k.zip"
    with pytest.raises(DataError, match=r"cannot download .*offline"):
        download_dataset("kvasir-seg", tmp_path / "data", url=url)
    assert attempts == [url]
    assert not (tmp_path / "data").exists()


def test_bad_checksum_option(kvasir_zip: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="64 hexadecimal"):
        download_dataset("kvasir-seg", tmp_path / "d", archive=kvasir_zip, sha256="abc")
