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


#: Reads an inline SVG of matplotlib (every text a ``<g id="text_N">``, every legend a
#: ``<g id="legend_N">``, every axes a ``<g id="axes_N">`` whose first patch is its
#: background) and returns its collisions: pairs of texts whose boxes overlap by more than
#: half a pixel, and legends over an axes.
COLLISIONS_JS = """() => {
  const box = e => e.getBoundingClientRect();
  const meet = (a, b, pad) => a.left + pad < b.right && b.left + pad < a.right
                           && a.top + pad < b.bottom && b.top + pad < a.bottom;
  const texts = [...document.querySelectorAll('g[id^="text_"]')]
      .map(e => [e.id, box(e)]).filter(([, r]) => r.width > 0 && r.height > 0);
  const found = [];
  for (let i = 0; i < texts.length; i++)
    for (let j = i + 1; j < texts.length; j++)
      if (meet(texts[i][1], texts[j][1], 0.5)) found.push(texts[i][0] + ' / ' + texts[j][0]);
  const frames = [...document.querySelectorAll('g[id^="axes_"] > g[id^="patch_"]:first-child')]
      .map(e => [e.parentNode.id, box(e)]);
  for (const legend of document.querySelectorAll('g[id^="legend_"]'))
    for (const [axes, r] of frames)
      if (meet(box(legend), r, 0.5)) found.push(legend.id + ' over ' + axes);
  return found;
}"""


def plot_collisions(context: Any, svg_uri: str) -> list[str]:
    """The collisions (:data:`COLLISIONS_JS`) of an SVG plot given as a ``data:`` URI, laid out
    by Chromium in a page of its own."""
    import base64

    svg = base64.b64decode(svg_uri.split(",", 1)[1]).decode("utf-8")
    svg = svg[svg.index("<svg"):]
    page = context.new_page()
    try:
        page.set_content(f"<!doctype html><html><body style='margin:0'>{svg}</body></html>")
        return page.evaluate(COLLISIONS_JS)
    finally:
        page.close()
