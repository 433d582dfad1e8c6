"""A small synthetic polyp-like dataset for offline demos and tests.

Each image is a smooth reddish "mucosa" texture with vessel-like streaks and one or two
elliptical "polyps": brighter, shaded, slightly textured blobs at random positions, sizes and
orientations. Masks mark the ellipses (255) on 0. Written in the Kvasir-SEG layout
(``images/NAME.png``, ``masks/NAME.png``) so :func:`polypseg.data.discover` reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    """Noise in [0, 1] with features of about ``size/scale`` pixels (bicubic upsampling)."""
    import cv2

    coarse = rng.random((scale, scale)).astype(np.float32)
    field = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    field -= field.min()
    return field / max(float(field.max()), 1e-6)


def synthetic_pair(rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """One ``(image uint8 (S, S, 3), mask uint8 (S, S) in {0, 255})`` pair."""
    import cv2

    low = _smooth_noise(rng, size, 4)
    mid = _smooth_noise(rng, size, 12)
    base_colour = np.array([0.78, 0.42, 0.36]) + rng.normal(0, 0.04, 3)
    shade = 0.55 + 0.35 * low[..., None] + 0.1 * mid[..., None]
    image = shade * base_colour[None, None, :]
    streaks = _smooth_noise(rng, size, 24)
    image[..., 0] -= 0.12 * (streaks > 0.75)
    mask = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for _ in range(1 + int(rng.random() < 0.3)):
        centre = rng.uniform(0.25, 0.75, 2) * size
        axes = rng.uniform(0.08, 0.22, 2) * size
        angle = rng.uniform(0, 180)
        blob = np.zeros((size, size), np.uint8)
        cv2.ellipse(blob, (int(centre[0]), int(centre[1])), (int(axes[0]), int(axes[1])),
                    angle, 0, 360, 255, -1)
        inside = blob > 0
        dist = np.hypot((xx - centre[0]) / axes.max(), (yy - centre[1]) / axes.max())
        highlight = np.clip(1.2 - dist, 0, 1)[..., None]
        polyp_colour = np.array([0.92, 0.62, 0.5]) + rng.normal(0, 0.04, 3)
        polyp = polyp_colour[None, None, :] * (0.7 + 0.3 * highlight) + 0.05 * mid[..., None]
        image[inside] = polyp[inside]
        mask |= blob
    image += rng.normal(0, 0.02, image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8), mask


def make_synthetic(folder: str | Path, n: int = 160, size: int = 128, seed: int = 0) -> Path:
    """Write ``n`` pairs under ``folder`` (kept if already complete); return ``folder``.

    Args:
        folder: the dataset folder; gets ``images/`` and ``masks/``.
        n: image/mask pairs.
        size: side in pixels of each square image.
        seed: seed of the generated images.
    """
    import cv2

    from polypseg.atomic import atomic_write_bytes

    folder = Path(folder)
    images, masks = folder / "images", folder / "masks"
    if images.is_dir() and masks.is_dir() and len(list(masks.glob("*.png"))) >= n:
        return folder
    rng = np.random.default_rng(seed)
    for i in range(n):
        image, mask = synthetic_pair(rng, size)
        name = f"synth_{i:04d}.png"
        ok_image, image_png = cv2.imencode(".png", image[..., ::-1])
        ok_mask, mask_png = cv2.imencode(".png", mask)
        if not (ok_image and ok_mask):
            raise RuntimeError("PNG encoding failed")
        atomic_write_bytes(images / name, image_png.tobytes())
        atomic_write_bytes(masks / name, mask_png.tobytes())
    return folder
