"""Helpers of the bench tests: a tiny synthetic dataset under any folder name."""

from __future__ import annotations

from pathlib import Path

from conftest import write_dataset


def write_dataset_at(root: Path, name: str, seed: int = 0) -> Path:
    """``root/NAME/{images,masks}``: :func:`conftest.write_dataset`'s discs, renamed."""
    root.mkdir(parents=True, exist_ok=True)
    folder = write_dataset(root, seed=seed)
    return folder.rename(root / name) if folder.name != name else folder
