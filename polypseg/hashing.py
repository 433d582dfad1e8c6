"""SHA-256 of files: checkpoint weights, exported artifacts, downloaded dataset archives."""

from __future__ import annotations

import hashlib
import os

#: Bytes read at a time (the file is never held in memory whole).
CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
