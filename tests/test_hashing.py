"""File hashing: the one SHA-256 of checkpoints, exports and downloaded archives."""

from __future__ import annotations

import hashlib
from pathlib import Path

from polypseg.hashing import CHUNK, file_sha256


def test_file_sha256_reads_in_chunks_what_hashlib_gives_in_one(tmp_path: Path) -> None:
    data = bytes(range(256)) * (CHUNK // 256 * 2 + 3)  # two full chunks and a part
    (tmp_path / "f").write_bytes(data)
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(tmp_path / "empty")) == hashlib.sha256(b"").hexdigest()
