"""Fixtures for the data tests: the shared real datasets (skipped when absent) and small
synthetic datasets written to ``tmp_path`` in every supported layout."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pytest
from data_helpers import LAYOUT_FOLDERS, DatasetWriter, sample, shared_data_root, write_rgb

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def _shared(name: str) -> Path:
    folder = shared_data_root() / name
    if not (folder / "images").is_dir():
        pytest.skip(f"shared dataset {folder} is absent (set POLYPSEG_SHARED_DATA to its parent)")
    return folder


@pytest.fixture(scope="session")
def kvasir_dir() -> Path:
    """The shared re-encoded Kvasir-SEG (898 images)."""
    return _shared("Kvasir-SEG")


@pytest.fixture(scope="session")
def clinicdb_dir() -> Path:
    """The shared re-encoded CVC-ClinicDB (543 frames, sequences 1-26)."""
    return _shared("CVC-ClinicDB")


@pytest.fixture
def make_dataset(tmp_path: Path) -> DatasetWriter:
    """``make_dataset(name, stems, layout=..., sizes=None, suffix=None) -> root``.

    Writes one image and one mask per stem under ``tmp_path/name`` in the folders of
    ``layout``; ``sizes`` gives (height, width) per stem (default 32x40).
    """

    def write(
        name: str,
        stems: Iterable[str],
        layout: str = "images-masks",
        sizes: list[tuple[int, int]] | None = None,
        suffix: str | None = None,
    ) -> Path:
        root = tmp_path / name
        image_dir, mask_dir, default_suffix = LAYOUT_FOLDERS[layout]
        ext = suffix or default_suffix
        for i, stem in enumerate(stems):
            height, width = sizes[i] if sizes else (32, 40)
            image, mask = sample(height, width, seed=i)
            write_rgb(root / image_dir / f"{stem}{ext}", image)
            write_rgb(root / mask_dir / f"{stem}{ext}", mask)
        return root

    return write
