"""Helpers of the deployment tests: paths, constants and deterministic test images."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHARED_IMAGES = REPO.parent / "shared" / "data" / "Kvasir-SEG" / "images"
SIDE = 64
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]

if str(REPO) not in sys.path:  # the tests import scripts/load_test.py and the repo's packages
    sys.path.insert(0, str(REPO))


def pattern(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic RGB test image: a smooth gradient, a bright disc and some noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 // max(1, width - 1), yy * 255 // max(1, height - 1),
                      np.full_like(xx, 90)], axis=-1).astype(np.uint8)  # fmt: skip
    cv2.circle(image, (width // 3, height // 2), max(3, min(height, width) // 4), (240, 80, 60), -1)
    noise = rng.integers(0, 20, size=image.shape, dtype=np.uint8)
    return cv2.add(image, noise)


def encode(image: np.ndarray, ext: str = ".png") -> bytes:
    """Bytes of an RGB image encoded as ``ext``."""
    ok, buffer = cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return buffer.tobytes()


def real_image() -> Path | None:
    """The first Kvasir-SEG image of the shared data, or None when it is absent."""
    if not SHARED_IMAGES.is_dir():
        return None
    return next(iter(sorted(SHARED_IMAGES.glob("*.jpg"))), None)
