"""Inputs of ``polypseg predict``: image files, folders of images/videos, and video files.

:func:`collect_sources` validates the command line's paths up front (missing path, unsupported
file, empty folder: each a :class:`~polypseg.errors.DataError` naming it) so that a long run does
not fail half-way on a typo; :func:`iter_frames` then yields RGB frames one at a time (a video
is never held in memory whole).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from polypseg.data.formats import IMAGE_SUFFIXES
from polypseg.data.io import not_a_file, read_image
from polypseg.errors import DataError

#: Video suffixes read frame by frame through OpenCV.
VIDEO_SUFFIXES: frozenset[str] = frozenset(
    {".avi", ".mp4", ".mov", ".mkv", ".mpg", ".mpeg", ".m4v", ".webm", ".wmv"}
)


@dataclass(frozen=True)
class Source:
    """One input file: an image or a video."""

    path: Path
    kind: str  # "image" | "video"


@dataclass
class Frame:
    """One image to segment: an image file, or one frame of a video (``index`` from 0)."""

    source: Path
    index: int | None
    image: np.ndarray  # (H, W, 3) RGB uint8
    #: Frames per second of the video (its header's; ``None`` for an image or when unknown).
    fps: float | None = None

    @property
    def timestamp(self) -> float | None:
        """Seconds from the start of the video (``index / fps``), ``None`` for an image."""
        if self.index is None or not self.fps:
            return None
        return self.index / self.fps


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None


def _supported() -> str:
    return ", ".join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))


def collect_sources(paths: Sequence[str | Path]) -> list[Source]:
    """Expand files and folders (their direct children, sorted by name) into sources."""
    sources: list[Source] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = [
                Source(child, kind)
                for child in sorted(path.iterdir())
                if child.is_file() and (kind := _kind(child)) is not None
            ]
            if not found:
                raise DataError(f"folder {path} holds no images or videos ({_supported()})")
            sources.extend(found)
        elif path.is_file():
            kind = _kind(path)
            if kind is None:
                raise DataError(f"unsupported file {path}: expected one of {_supported()}")
            sources.append(Source(path, kind))
        elif not path.exists() and not path.is_symlink():
            raise DataError(f"no such file or folder: {path}")
        else:
            raise DataError(f"{path}: {not_a_file(path)}")
    if not sources:
        raise DataError("no inputs given")
    return sources


def estimate_frames(sources: Sequence[Source]) -> int:
    """Number of frames the sources will yield (videos by their header's frame count)."""
    total = 0
    for source in sources:
        if source.kind == "image":
            total += 1
            continue
        capture = cv2.VideoCapture(str(source.path))
        total += max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        capture.release()
    return total


def _video_frames(path: Path, problems: list[str] | None = None) -> Iterator[Frame]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(f"{path}: not a readable video (corrupt or unsupported codec)")
    announced = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    fps = fps if fps > 0 and fps == fps else None  # NaN or 0: unknown
    index = 0
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            yield Frame(path, index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), fps)
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise DataError(f"{path}: no frame could be decoded from this video")
    if index < announced and problems is not None:
        problems.append(
            f"{path}: only {index} of the {announced} frames its header announces could be "
            "decoded (truncated or corrupt video)"
        )


def iter_frames(sources: Sequence[Source], problems: list[str] | None = None) -> Iterator[Frame]:
    """Yield each image, and each frame of each video, as RGB ``uint8``.

    A video that ends before the frame count in its header (truncated) yields the frames it
    has; a line saying so is appended to ``problems`` when a list is given.
    """
    for source in sources:
        if source.kind == "image":
            yield Frame(source.path, None, read_image(source.path))
        else:
            yield from _video_frames(source.path, problems)
