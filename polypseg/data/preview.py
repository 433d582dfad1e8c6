"""``polypseg data preview``: a grid of images with their mask outlines, to eyeball a dataset."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from polypseg.atomic import atomic_write_bytes
from polypseg.data.io import read_pair
from polypseg.data.layouts import Pair
from polypseg.errors import DataError

OUTLINE_RGB = (0, 255, 0)
LABEL_RGB = (255, 255, 0)


def pick(pairs: Sequence[Pair], n: int, seed: int | None = None) -> list[Pair]:
    """``n`` pairs: evenly spaced through the list, or a seeded random sample when ``seed``."""
    if n < 1:
        raise DataError(f"--n must be at least 1, got {n}")
    if n >= len(pairs):
        return list(pairs)
    if seed is None:
        return [pairs[round(i * (len(pairs) - 1) / max(n - 1, 1))] for i in range(n)]
    chosen = np.random.default_rng(seed).choice(len(pairs), size=n, replace=False)
    return [pairs[i] for i in sorted(chosen)]


def _fit(image: np.ndarray, mask: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """Scale to fit a ``tile`` square keeping the aspect ratio; pad with black."""
    h, w = mask.shape
    scale = tile / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    top, left = (tile - size[1]) // 2, (tile - size[0]) // 2
    canvas = np.zeros((tile, tile, 3), np.uint8)
    canvas_mask = np.zeros((tile, tile), np.uint8)
    canvas[top : top + size[1], left : left + size[0]] = image
    canvas_mask[top : top + size[1], left : left + size[0]] = mask
    return canvas, canvas_mask


def render_tile(pair: Pair, tile: int = 256) -> np.ndarray:
    """One RGB tile: the image, its mask outline in green and its name in the corner."""
    image, mask = read_pair(pair)
    canvas, canvas_mask = _fit(image, mask, tile)
    contours, _ = cv2.findContours(canvas_mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(canvas, contours, -1, OUTLINE_RGB, max(1, tile // 128))
    label = pair.stem if len(pair.stem) <= 24 else pair.stem[:21] + "..."
    scale = tile / 512
    cv2.putText(canvas, label, (4, 4 + round(24 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (0, 0, 0), 3, cv2.LINE_AA)  # fmt: skip
    cv2.putText(canvas, label, (4, 4 + round(24 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                LABEL_RGB, 1, cv2.LINE_AA)  # fmt: skip
    return canvas


def make_grid(pairs: Sequence[Pair], tile: int = 256, cols: int | None = None) -> np.ndarray:
    """An RGB grid of :func:`render_tile` tiles, ``cols`` wide (default: near square)."""
    if not pairs:
        raise DataError("nothing to preview: no image/mask pairs")
    if tile < 16:
        raise DataError(f"--tile must be at least 16 pixels, got {tile}")
    cols = cols or math.ceil(math.sqrt(len(pairs)))
    rows = math.ceil(len(pairs) / cols)
    gap = 2
    grid = np.full((rows * (tile + gap) - gap, cols * (tile + gap) - gap, 3), 255, np.uint8)
    for i, pair in enumerate(pairs):
        r, c = divmod(i, cols)
        y, x = r * (tile + gap), c * (tile + gap)
        grid[y : y + tile, x : x + tile] = render_tile(pair, tile)
    return grid


def save_png(path: str | os.PathLike[str], rgb: np.ndarray) -> Path:
    """Write an RGB array as PNG, atomically."""
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise DataError(f"{target}: the preview is a PNG file; name it *.png")
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DataError(f"{target}: could not encode the preview as PNG")
    atomic_write_bytes(target, encoded.tobytes())
    return target
