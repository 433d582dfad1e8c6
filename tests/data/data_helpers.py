"""Helpers for the data tests (a module name of its own, so it never clashes with another
test folder's ``conftest``): write images and small synthetic datasets."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np


def shared_data_root() -> Path:
    """``$POLYPSEG_SHARED_DATA`` or ``<repo>/../shared/data``."""
    override = os.environ.get("POLYPSEG_SHARED_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    """Write an RGB (or grayscale/RGBA) array with OpenCV, converting RGB to BGR."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = rgb
    if rgb.ndim == 3 and rgb.shape[2] == 3:
        array = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif rgb.ndim == 3 and rgb.shape[2] == 4:
        array = cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA)
    ok, encoded = cv2.imencode(path.suffix, array)
    assert ok, path
    path.write_bytes(encoded.tobytes())
    return path


def sample(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random RGB image and a 0/255 mask holding one ellipse (never empty)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), np.uint8)
    center = (width // 2, height // 2)
    cv2.ellipse(mask, center, (max(2, width // 4), max(2, height // 5)), 0, 0, 360, 255, -1)
    return image, mask


#: Layout name -> (image folder, mask folder, file suffix) used to write synthetic datasets.
LAYOUT_FOLDERS: dict[str, tuple[str, str, str]] = {
    "images-masks": ("images", "masks", ".jpg"),
    "original-groundtruth": ("Original", "Ground Truth", ".tif"),
    "tif-original": ("TIF/Original", "TIF/Ground Truth", ".tif"),
    "png-original": ("PNG/Original", "PNG/Ground Truth", ".png"),
}

#: ``make_dataset(name, stems, layout=..., sizes=None, suffix=None) -> root`` (fixture).
DatasetWriter = Callable[..., Path]

#: Frame numbers of CVC-ClinicDB in five sequences (1: 1-25, 2: 26-50, 3: 51-67, 4: 68-78,
#: 5: 79-103), two or three frames each.
CLINICDB_FRAMES = ["1", "2", "25", "26", "27", "51", "52", "68", "69", "79", "80", "103"]
