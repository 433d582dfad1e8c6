"""Helpers of the browser tests: what a page did, pixel checks on screenshots, saving them."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SHARED_KVASIR = REPO.parent / "shared" / "data" / "Kvasir-SEG"


@dataclass
class Watched:
    """A page and what it reported: console errors, uncaught exceptions, requested URLs."""

    page: Any
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def on_console(self, message: Any) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)


def pixels(png: bytes) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 array of a PNG screenshot."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def assert_not_blank(png: bytes, what: str, min_share: float = 0.01) -> None:
    """The screenshot shows something: at least ``min_share`` of its pixels differ from its
    most common colour (a missing image renders as one flat colour) and brightness varies."""
    rgb = pixels(png)
    colours, counts = np.unique(rgb.reshape(-1, 3), axis=0, return_counts=True)
    other = 1.0 - counts.max() / counts.sum()
    spread = float(rgb.astype(np.float32).mean(axis=2).std())
    assert other >= min_share and spread > 3.0, (
        f"{what} looks blank: {len(colours)} colours, {other:.1%} of pixels off the most "
        f"common one, brightness std {spread:.1f}"
    )


def save_screenshot(png: bytes, name: str, width: int = 960) -> Path | None:
    """Into ``$POLYPSEG_SCREENSHOTS/NAME`` when set: scaled to ``width`` px, 256 colours."""
    folder = os.environ.get("POLYPSEG_SCREENSHOTS")
    if not folder:
        return None
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)),
                             Image.Resampling.LANCZOS)
    target = Path(folder) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    return target
