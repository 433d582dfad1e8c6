"""``polypseg data check``: read every pair of a dataset and list what is wrong with it.

Problems (the check fails): pairs that do not match by name, unreadable files, images and masks
of different sizes, empty masks, ClinicDB files without a frame number, an unreadable bounding
box file. Notes (the check passes): non-binary masks (JPEG noise, soft edges; they are
thresholded at 127), stray non-image files, ClinicDB frames missing from the official 612.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from polypseg.data.clinicdb import sequence_frames
from polypseg.data.formats import LOSSY_SUFFIXES
from polypseg.data.io import (
    MASK_THRESHOLD,
    binarize,
    read_image,
    read_mask_raw,
    size_mismatch,
)
from polypseg.data.layouts import DatasetIndex, Pair
from polypseg.errors import DataError

#: Raw mask values in this range are "uncertain": far from both 0 and 255.
UNCERTAIN_RANGE = (64, 191)


@dataclass(frozen=True)
class MaskValues:
    """What a non-binary mask holds: distinct values, their range, share of uncertain pixels."""

    path: Path
    distinct: int
    low: int
    high: int
    uncertain: float

    def describe(self) -> str:
        """``"masks/a.png: 5 values from 0 to 200, 12.0% of pixels in 64-191"``."""
        lo, hi = UNCERTAIN_RANGE
        return (
            f"{self.path}: {self.distinct} values from {self.low} to {self.high}, "
            f"{100 * self.uncertain:.1f}% of pixels in {lo}-{hi} (thresholded at {MASK_THRESHOLD})"
        )


@dataclass
class _PairResult:
    size: tuple[int, int] | None = None  # (width, height) of the image
    foreground: float | None = None
    error: str | None = None
    mismatch: str | None = None
    values: MaskValues | None = None
    uncertain_pixels: int = 0
    pixels: int = 0


@dataclass
class CheckReport:
    """The findings of :func:`check_dataset` on one dataset folder."""

    index: DatasetIndex
    unreadable: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    empty_masks: list[Path] = field(default_factory=list)
    non_binary: list[MaskValues] = field(default_factory=list)
    sizes: Counter[tuple[int, int]] = field(default_factory=Counter)
    foreground: list[float] = field(default_factory=list)
    uncertain_pixels: int = 0
    mask_pixels: int = 0
    bbox_problem: str | None = None
    bbox_entries: int | None = None

    @property
    def problems(self) -> list[str]:
        """Every problem, one readable line each; empty when the dataset is usable as it is."""
        lines = list(self.index.problems) + self.unreadable + self.mismatched
        lines += [f"{p}: empty mask (no pixel above {MASK_THRESHOLD})" for p in self.empty_masks]
        if self.bbox_problem:
            lines.append(self.bbox_problem)
        return lines

    @property
    def ok(self) -> bool:
        """True when there is no problem."""
        return not self.problems

    def foreground_stats(self) -> dict[str, float]:
        """Min, median, mean and max of the polyp fraction of each readable mask."""
        if not self.foreground:
            return {}
        values = self.foreground
        return {
            "min": min(values),
            "median": statistics.median(values),
            "mean": statistics.fmean(values),
            "max": max(values),
        }

    def suspicious_masks(self) -> list[MaskValues]:
        """Non-binary masks worth a look, most uncertain first: lossless files (where grey
        values are deliberate) and masks with over 1% uncertain pixels (more than JPEG noise)."""
        chosen = [
            m
            for m in self.non_binary
            if m.uncertain > 0.01 or m.path.suffix.lower() not in LOSSY_SUFFIXES
        ]
        return sorted(chosen, key=lambda m: -m.uncertain)

    def official_images(self) -> int | None:
        """How many pairs the dataset's official release holds (:mod:`polypseg.data.registry`),
        when known."""
        from polypseg.data import registry

        return registry.get(self.index.name).images

    def missing_frames(self) -> list[int]:
        """ClinicDB frames of the sequences present that are absent from the folder."""
        present = {int(p.stem) for p in self.index.pairs if p.sequence is not None}
        expected = {f for s in self.index.sequences for f in sequence_frames(s)}
        return sorted(expected - present)


def _mask_values(path: Path, histogram: np.ndarray) -> MaskValues | None:
    """The values of a mask that is not strictly binary (0/255, or 0/1 in a lossless file),
    from its 256-bin histogram."""
    values = np.flatnonzero(histogram)
    seen = set(values.tolist())
    lossless = path.suffix.lower() not in LOSSY_SUFFIXES
    if seen <= {0, 255} or (lossless and seen <= {0, 1}):
        return None
    lo, hi = UNCERTAIN_RANGE
    uncertain = float(histogram[lo : hi + 1].sum() / histogram.sum())
    return MaskValues(path, len(values), int(values[0]), int(values[-1]), uncertain)


def _check_pair(pair: Pair) -> _PairResult:
    result = _PairResult()
    try:
        image = read_image(pair.image)
        raw = read_mask_raw(pair.mask)
    except DataError as err:
        result.error = str(err)
        return result
    result.size = (image.shape[1], image.shape[0])
    result.mismatch = size_mismatch(image, raw, pair)
    if result.mismatch:
        return result
    histogram = np.bincount(raw.ravel(), minlength=256)
    lo, hi = UNCERTAIN_RANGE
    result.uncertain_pixels = int(histogram[lo : hi + 1].sum())
    result.pixels = raw.size
    result.foreground = float(binarize(raw, pair.mask).mean())
    result.values = _mask_values(pair.mask, histogram)
    return result


def _check_bboxes(report: CheckReport) -> None:
    path = report.index.bboxes
    if path is None:
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        report.bbox_problem = f"{path}: unreadable bounding box file ({err})"
        return
    report.bbox_entries = len(data) if isinstance(data, dict | list) else 0


def check_dataset(
    index: DatasetIndex,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> CheckReport:
    """Read every pair of ``index`` and collect problems and statistics.

    ``progress(n)`` is called after each pair with the number done so far. Files are decoded
    on ``workers`` threads (OpenCV releases the GIL); default: up to 4.
    """
    report = CheckReport(index)
    _check_bboxes(report)
    threads = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for done, (pair, result) in enumerate(
            zip(index.pairs, pool.map(_check_pair, index.pairs), strict=True), start=1
        ):
            if result.error:
                report.unreadable.append(result.error)
            if result.mismatch:
                report.mismatched.append(result.mismatch)
            if result.size:
                report.sizes[result.size] += 1
            if result.foreground is not None:
                report.foreground.append(result.foreground)
                if result.foreground == 0.0:
                    report.empty_masks.append(pair.mask)
            if result.values:
                report.non_binary.append(result.values)
            report.uncertain_pixels += result.uncertain_pixels
            report.mask_pixels += result.pixels
            if progress is not None:
                progress(done)
    return report
