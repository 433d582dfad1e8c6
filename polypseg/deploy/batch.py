"""``polypseg predict`` as a library call: sources in, masks, overlays and a CSV out.

Output folder layout::

    OUT/masks/NAME.png        {0, 255} mask at the input's original size
    OUT/overlays/NAME.jpg     the input with the mask outlined or tinted (unless overlay="none")
    OUT/predictions.csv       name, source, frame, width, height, foreground_fraction, mask

``NAME`` is the image's file stem, or ``STEM_f000123`` for frame 123 of a video; a name already
taken gets a ``-2``, ``-3``... suffix.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from polypseg.atomic import atomic_write_text
from polypseg.deploy.bundle import ModelBundle
from polypseg.deploy.predict import foreground_fraction, overlay, segment, to_mask
from polypseg.deploy.sources import Frame, Source, iter_frames
from polypseg.errors import DataError

#: Overlay styles of :func:`predict_files`.
OVERLAY_CHOICES = ("outline", "tint", "none")
CSV_COLUMNS = ("name", "source", "frame", "width", "height", "foreground_fraction", "mask")


@dataclass
class PredictSummary:
    """What :func:`predict_files` wrote."""

    images: int
    out: Path
    csv: Path
    mean_foreground: float
    #: Inputs that were read only in part (a truncated video), one line each.
    problems: list[str] = field(default_factory=list)


def _batches(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Namer:
    """Unique output names from file stems and frame numbers."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def __call__(self, frame: Frame) -> str:
        base = frame.source.stem
        if frame.index is not None:
            base = f"{base}_f{frame.index:06d}"
        name, n = base, 1
        while name in self.taken:
            n += 1
            name = f"{base}-{n}"
        self.taken.add(name)
        return name


def _write_image(path: Path, image: np.ndarray, quality: int | None = None) -> None:
    array = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if quality else []
    if not cv2.imwrite(str(path), array, params):
        raise DataError(f"cannot write {path}")


def predict_files(
    bundle: ModelBundle,
    sources: Sequence[Source],
    out: Path,
    *,
    tta: str | None = None,
    batch_size: int = 8,
    threshold: float | None = None,
    overlay_style: str = "outline",
    on_progress: Callable[[int], None] | None = None,
) -> PredictSummary:
    """Segment every image and video frame of ``sources`` into ``out`` (see module docstring).

    A truncated video gives the masks of the frames it has and a line in the summary's
    ``problems``. ``threshold`` defaults to the model's; ``on_progress(n)`` is called after
    each batch with the number of images it held.
    """
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    if overlay_style not in OVERLAY_CHOICES:
        raise DataError(f"overlay must be one of {', '.join(OVERLAY_CHOICES)}")
    cut = bundle.threshold if threshold is None else threshold
    if not 0.0 <= cut <= 1.0:
        raise DataError(f"threshold must lie in [0, 1], got {cut}")
    masks_dir, overlays_dir = out / "masks", out / "overlays"
    namer = _Namer()
    rows: list[dict[str, object]] = []
    problems: list[str] = []
    for batch in _batches(iter_frames(sources, problems), batch_size):
        probs = segment(bundle, [frame.image for frame in batch], tta=tta)
        if not rows:  # created with the first results: a first unreadable input leaves no folder
            masks_dir.mkdir(parents=True, exist_ok=True)
            if overlay_style != "none":
                overlays_dir.mkdir(parents=True, exist_ok=True)
        for frame, prob in zip(batch, probs, strict=True):
            name = namer(frame)
            mask = to_mask(prob, cut)
            _write_image(masks_dir / f"{name}.png", mask)
            if overlay_style != "none":
                drawn = overlay(frame.image, mask, overlay_style)
                _write_image(overlays_dir / f"{name}.jpg", drawn, quality=90)
            rows.append(
                {
                    "name": name,
                    "source": str(frame.source),
                    "frame": "" if frame.index is None else frame.index,
                    "width": mask.shape[1],
                    "height": mask.shape[0],
                    "foreground_fraction": f"{foreground_fraction(mask):.6f}",
                    "mask": f"masks/{name}.png",
                }
            )
        if on_progress is not None:
            on_progress(len(batch))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path = out / "predictions.csv"
    atomic_write_text(csv_path, buffer.getvalue())
    mean = sum(float(r["foreground_fraction"]) for r in rows) / len(rows) if rows else 0.0
    return PredictSummary(
        images=len(rows), out=out, csv=csv_path, mean_foreground=mean, problems=problems
    )
