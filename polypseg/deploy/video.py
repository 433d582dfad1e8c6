"""A video's predictions as a video: the overlay video and the per-video summary.

:class:`OverlayVideo` writes the frames of an overlay video one at a time (OpenCV's
``VideoWriter``, MPEG-4 Part 2 in an ``.mp4`` file, at the input's frame rate) into a hidden
file beside its target and moves it into place when closed, so a reader never sees half a
video; :func:`video_summary` condenses the per-frame rows of a video.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from polypseg.atomic import apply_umask
from polypseg.errors import DataError

#: Frame rate written when the input's header gives none.
DEFAULT_FPS = 25.0
#: Codec and suffix of overlay videos (OpenCV's pip wheels encode MPEG-4 Part 2, not H.264).
FOURCC, SUFFIX = "mp4v", ".mp4"


class OverlayVideo:
    """An overlay video being written; :meth:`close` moves it to ``path``.

    Args:
        path: the video to write (``.mp4``).
        fps: its frame rate (the input's).
    """

    def __init__(self, path: Path, fps: float | None) -> None:
        self.path = path
        self.fps = fps or DEFAULT_FPS
        # VideoWriter picks the container from the suffix, so the hidden name keeps it
        self.tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
        self.writer: cv2.VideoWriter | None = None
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` RGB ``uint8`` frame (the first fixes the size)."""
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            height, width = rgb.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*FOURCC)
            self.writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, (width, height))
            if not self.writer.isOpened():
                self.discard()
                raise DataError(f"cannot write the overlay video {self.path}")
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> Path | None:
        """Finish the video and move it into place; ``None`` when no frame was written."""
        if self.writer is None:
            return None
        self.writer.release()
        self.writer = None
        apply_umask(self.tmp)
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        """Drop a video that will not be finished."""
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


def _runs(flags: list[bool]) -> list[tuple[int, int]]:
    """``(start, length)`` of each run of consecutive ``True``."""
    runs, start = [], None
    for i, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


def video_summary(rows: list[dict[str, Any]], fps: float | None) -> dict[str, Any]:
    """Frames with a polyp, their runs, the longest one and the mean latency of a video.

    Args:
        rows: the video's per-frame rows in frame order, each with ``frame``,
            ``polyp_present`` (bool) and ``latency_ms``.
        fps: the video's frame rate (``None``: times are left out).
    """
    flags = [bool(row["polyp_present"]) for row in rows]
    runs = _runs(flags)
    frames = [int(row["frame"]) for row in rows]
    longest: dict[str, Any] | None = None
    if runs:
        start, length = max(runs, key=lambda run: (run[1], -run[0]))
        first, last = frames[start], frames[start + length - 1]
        longest = {"frames": length, "first_frame": first, "last_frame": last}
        if fps:
            longest |= {"start_s": round(first / fps, 3), "end_s": round((last + 1) / fps, 3)}
    latencies = [float(row["latency_ms"]) for row in rows]
    return {
        "frames": len(rows),
        "fps": fps,
        "duration_s": round(len(rows) / fps, 3) if fps else None,
        "frames_with_polyp": sum(flags),
        "share_with_polyp": sum(flags) / len(flags) if flags else 0.0,
        "runs_with_polyp": len(runs),
        "longest_run": longest,
        "mean_latency_ms": round(sum(latencies) / len(latencies), 2) if latencies else None,
    }
