"""Paths as result files record them: portable, never tied to one machine's folders.

A result that is committed is read on other machines, so the paths it records are relative:

* :func:`portable` writes an absolute path that lies under the working directory (the project
  root, where the commands run) or beside it (the shared data, ``../shared/data/...``) relative
  to it; a path elsewhere (a temporary folder) stays as given, since no relative form would
  name it anywhere else either.
* :func:`portable_tree` applies that to every string of a JSON document that is an absolute
  path, so a writer wraps its whole document once.
* :func:`dataset_folder` finds a dataset by its registry key (``kvasir``, ``cvc``) the way the
  project lays it out: ``../shared/data/<folder>`` beside the project root.

Readers resolve a recorded relative path against the working directory, then against the
folder of the file that records it and each of its parents
(:func:`polypseg.report.inputs.resolve_recorded`), so a result read from any working directory
inside the clone finds what it names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: Dataset registry keys of the bench and their folder names (as downloaded, and in
#: ``../shared/data``).
DATASET_FOLDERS: dict[str, str] = {"kvasir": "Kvasir-SEG", "cvc": "CVC-ClinicDB"}
#: Dataset names as evaluations record them (``index.name``) -> registry key.
DATASET_KEYS: dict[str, str] = {"kvasir-seg": "kvasir", "cvc-clinicdb": "cvc",
                                "kvasir": "kvasir", "cvc": "cvc",
                                "Kvasir-SEG": "kvasir", "CVC-ClinicDB": "cvc"}
#: Where the project keeps its data, relative to the project root.
SHARED_DATA = Path("..") / "shared" / "data"


def portable(path: str | Path, anchor: str | Path | None = None) -> str:
    """``path`` relative to ``anchor`` (default: the working directory) when it lies under
    ``anchor`` or under ``anchor``'s parent; otherwise (or when relative already) as given.

    Lexical (symbolic links are not followed), so ``/a/b/../c`` under anchor ``/a/b`` gives
    ``../c``.

    Args:
        path: the path a result would record.
        anchor: the folder the relative form is relative to.
    """
    text = str(path)
    if not os.path.isabs(text):
        return text
    root = os.path.normpath(os.path.abspath(anchor if anchor is not None else os.getcwd()))
    target = os.path.normpath(text)
    parent = os.path.dirname(root)
    if parent in ("", os.sep) or os.path.commonpath([target, parent]) != parent:
        return text
    return os.path.relpath(target, root)


def portable_tree(doc: Any, anchor: str | Path | None = None) -> Any:
    """``doc`` (JSON: dicts, lists, strings, numbers) with every string that is an absolute
    path replaced by :func:`portable` of it; other values unchanged (a new object)."""
    if isinstance(doc, dict):
        return {k: portable_tree(v, anchor) for k, v in doc.items()}
    if isinstance(doc, list):
        return [portable_tree(v, anchor) for v in doc]
    if isinstance(doc, str) and doc.startswith(("/", "\\")) and "\n" not in doc:
        return portable(doc, anchor)
    return doc


def dataset_key(name: str | None) -> str | None:
    """The registry key (``kvasir``, ``cvc``) of a dataset name as results record it
    (``kvasir-seg``, ``Kvasir-SEG``, ``cvc``, ...), or None."""
    if not name:
        return None
    return DATASET_KEYS.get(name) or DATASET_KEYS.get(name.lower())


def dataset_folder(key: str | None, near: str | Path | None = None) -> Path | None:
    """The folder of dataset ``key`` in the project's layout, or None when it is not there.

    Looked up as ``../shared/data/<folder>`` against the working directory, then against
    ``near`` (a result file) and each of its parents: the project root of the clone that holds
    the result.

    Args:
        key: a registry key or a recorded dataset name (see :func:`dataset_key`).
        near: a file or folder inside the clone.
    """
    key = dataset_key(key)
    if key is None:
        return None
    relative = SHARED_DATA / DATASET_FOLDERS[key]
    bases = [Path.cwd()]
    if near is not None:
        bases += list(Path(near).resolve().parents)
    for base in bases:
        if (base / relative).is_dir():
            return base / relative
    return None


#: The folder of committed results: commands never write into it unless told to (``--out``).
RESULTS = "results"
#: Where their default output goes instead, relative to the working directory.
OUTSIDE = Path("out")


def default_output(path: str | Path) -> Path:
    """Where a command's default output beside ``path`` (``RUN/eval``, ``RUN/sweep``,
    ``RUN/symmetry.json``) goes: ``path`` itself, unless it lies under a committed ``results/``
    folder, which stays read-only: then ``out/<the path below results>`` in the working
    directory (``results/models/kvasir-p4/eval`` -> ``out/models/kvasir-p4/eval``).

    Args:
        path: the default output path inside the run folder.
    """
    parts = Path(os.path.abspath(path)).parts
    if RESULTS not in parts[:-1]:
        return Path(path)
    below = parts[len(parts) - 1 - parts[::-1].index(RESULTS) + 1:]
    return OUTSIDE.joinpath(*below)
