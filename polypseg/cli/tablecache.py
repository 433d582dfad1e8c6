"""A JSON cache of computed tables (``polypseg models``), so a repeated command need not import
torch, e2cnn and build every variant again.

An entry is keyed by everything its content depends on: polypseg's version, the installed
versions of torch and e2cnn (whether e2cnn is there decides which variants are available), a
SHA-256 of zoo's source files (a development checkout changes without a version bump) and the
command's arguments. A stale entry is never read, only left behind under another key. Entries
are plain JSON (never pickled), written atomically; a cache folder that cannot be written or an
entry that cannot be read just means computing the table, never an error.

Folder: ``$POLYPSEG_CACHE_DIR``, else ``$XDG_CACHE_HOME/polypseg``, else ``~/.cache/polypseg``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

#: Installed distributions whose versions key every entry.
KEY_DISTRIBUTIONS: tuple[str, ...] = ("torch", "e2cnn")
CACHE_ENV = "POLYPSEG_CACHE_DIR"


def cache_dir() -> Path:
    """The cache folder (not created here)."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "polypseg"


def _installed_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def source_digest(package: str) -> str:
    """SHA-256 over the ``.py`` files of ``package`` (found, not imported), by relative path."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return "absent"
    digest = hashlib.sha256()
    for root in spec.submodule_search_locations:
        base = Path(root)
        for path in sorted(base.rglob("*.py")):
            digest.update(path.relative_to(base).as_posix().encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_key(name: str, args: dict[str, Any]) -> str:
    """The hex key of table ``name`` computed with ``args`` (JSON-serialisable values)."""
    from polypseg import __version__

    parts = {
        "table": name,
        "args": args,
        "polypseg": __version__,
        "versions": {d: _installed_version(d) for d in KEY_DISTRIBUTIONS},
        "zoo": source_digest("zoo"),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _entry(name: str, key: str) -> Path:
    return cache_dir() / f"{name}-{key[:32]}.json"


def load(name: str, key: str) -> Any | None:
    """The cached value of table ``name`` under ``key``, or ``None`` (absent or unreadable)."""
    try:
        doc = json.loads(_entry(name, key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("key") != key:
        return None
    return doc.get("value")


def store(name: str, key: str, value: Any) -> bool:
    """Write ``value`` (JSON) as table ``name`` under ``key``; False when it cannot be written."""
    from polypseg.atomic import OutputError, atomic_write_json

    try:
        atomic_write_json(_entry(name, key), {"key": key, "value": value})
    except (OSError, OutputError):  # OutputError: atomic's one-line form of a write failure
        return False
    return True
