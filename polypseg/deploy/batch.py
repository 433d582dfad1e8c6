"""``polypseg predict`` as a library call: sources in; masks, overlays, tables and annotations out.

Output folder layout::

    OUT/masks/NAME.png           {0, 255} mask at the input's original size
    OUT/overlays/NAME.jpg        an image with its mask outlined or tinted (unless overlay="none";
                                 video frames only with overlay_video=False)
    OUT/videos/VIDEO.mp4         the video with each frame's mask tinted and outlined: same frame
                                 rate and frame count (unless overlay_video=False or "none")
    OUT/videos/VIDEO.csv         the video's per-frame table (columns of VIDEO_COLUMNS)
    OUT/videos/VIDEO.json        its summary: frames with a polyp, the longest run, mean latency
    OUT/coco/INPUT.json          COCO-style boxes and polygons of each input (image or video)
    OUT/predictions.csv          one row per image and frame (columns of CSV_COLUMNS)

``NAME`` is the image's file stem, or ``VIDEO_f000123`` for frame 123 of a video, ``INPUT``
and ``VIDEO`` the input's stem; a name already taken gets a ``-2``, ``-3``... suffix.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from polypseg.atomic import atomic_write_json, atomic_write_text
from polypseg.deploy.coco import CocoDocument
from polypseg.deploy.predict import (
    decision_label,
    decision_of,
    foreground_fraction,
    mask_geometry,
    overlay,
    polyp_present,
    segment,
    to_mask,
)
from polypseg.deploy.sources import Frame, Source, iter_frames
from polypseg.deploy.video import SUFFIX, OverlayVideo, video_summary
from polypseg.errors import DataError
from polypseg.opened import OpenedModel
from polypseg.options import Overlay, Tta, look_up_option, look_up_tta

#: Columns of a video's per-frame table.
VIDEO_COLUMNS = ("frame", "timestamp_s", "polyp_present", "foreground_fraction", "components",
                 "boxes", "max_probability", "latency_ms", "mask")  # fmt: skip
#: Columns of ``predictions.csv``: the same for every image and frame, named by its input.
CSV_COLUMNS = ("name", "source", "frame", "timestamp_s", "width", "height", "polyp_present",
               "foreground_fraction", "components", "boxes", "max_probability", "latency_ms",
               "mask")  # fmt: skip


@dataclass
class PredictSummary:
    """What :func:`predict_files` wrote."""

    images: int
    out: Path
    csv: Path
    mean_foreground: float
    #: Inputs that were read only in part (a truncated video), one line each.
    problems: list[str] = field(default_factory=list)
    #: Images and frames with a polyp (:func:`~polypseg.deploy.predict.polyp_present`).
    with_polyp: int = 0
    #: The per-video summaries written (``OUT/videos/VIDEO.json``).
    videos: list[Path] = field(default_factory=list)


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
    """Unique output names."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def __call__(self, base: str) -> str:
        name, n = base, 1
        while name in self.taken:
            n += 1
            name = f"{base}-{n}"
        self.taken.add(name)
        return name


def _write_image(path: Path, image: np.ndarray, quality: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if quality else []
    if not cv2.imwrite(str(path), array, params):
        raise DataError(f"cannot write {path}")


def _csv_text(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


class _Input:
    """One input (an image, or a video) while its frames are written."""

    def __init__(self, frame: Frame, name: str, model_id: str, video: OverlayVideo | None):
        self.source = frame.source
        self.is_video = frame.index is not None
        self.fps = frame.fps
        self.name = name
        self.video = video
        self.rows: list[dict[str, Any]] = []
        self.coco = CocoDocument(frame.source.name, model_id)

    def owns(self, frame: Frame) -> bool:
        """Whether ``frame`` is the next frame of this video (images are inputs of their own)."""
        return self.is_video and frame.source == self.source and frame.index not in (None, 0)


@dataclass
class _Writer:
    """Writes each image's files as it comes and each input's when it is complete."""

    out: Path
    model_id: str
    overlay_style: Overlay
    overlay_video: bool
    decision_label: str  # the frame-level rule in words (predict.decision_label)
    names: _Namer = field(default_factory=_Namer)
    current: _Input | None = None
    videos: list[Path] = field(default_factory=list)

    def start(self, frame: Frame) -> _Input:
        self.finish()
        name = self.names(frame.source.stem)
        video = None
        drawn = self.overlay_style is not Overlay.NONE
        if frame.index is not None and self.overlay_video and drawn:
            video = OverlayVideo(self.out / "videos" / f"{name}{SUFFIX}", frame.fps)
        self.current = _Input(frame, name, self.model_id, video)
        return self.current

    def add(self, frame: Frame, mask: np.ndarray, row: dict[str, Any]) -> None:
        current = self.current
        assert current is not None
        name = row["name"]
        _write_image(self.out / "masks" / f"{name}.png", mask)
        if current.video is not None:
            current.video.write(overlay(frame.image, mask, "fill"))
        elif self.overlay_style is not Overlay.NONE:
            drawn = overlay(frame.image, mask, self.overlay_style)
            _write_image(self.out / "overlays" / f"{name}.jpg", drawn, quality=90)
        geometry = row.pop("_geometry")
        extra = {} if frame.index is None else {"frame_index": frame.index,
                                                "timestamp_s": frame.timestamp}
        file_name = frame.source.name if frame.index is None else f"{name}.jpg"
        current.coco.add(file_name, mask.shape[1], mask.shape[0], geometry, extra)
        current.rows.append(row)

    def finish(self) -> None:
        """Write the files of the input in progress (its video, table, summary, COCO JSON)."""
        current, self.current = self.current, None
        if current is None:
            return
        atomic_write_json(self.out / "coco" / f"{current.name}.json", current.coco.to_json())
        if not current.is_video:
            return
        written = current.video.close() if current.video is not None else None
        folder = self.out / "videos"
        atomic_write_text(folder / f"{current.name}.csv", _csv_text(current.rows, VIDEO_COLUMNS))
        summary = {
            "source": current.source.name,
            "model_id": self.model_id,
            "decision": self.decision_label,
            **video_summary(current.rows, current.fps),
            "overlay_video": None if written is None else f"videos/{written.name}",
            "table": f"videos/{current.name}.csv",
            "coco": f"coco/{current.name}.json",
        }
        summary_path = folder / f"{current.name}.json"
        atomic_write_json(summary_path, summary)
        self.videos.append(summary_path)

    def discard(self) -> None:
        """Drop the unfinished overlay video of a run that failed."""
        if self.current is not None and self.current.video is not None:
            self.current.video.discard()


def _row(frame: Frame, name: str, prob: np.ndarray, mask: np.ndarray, cut: float,
         decision: dict[str, float] | None, latency_ms: float) -> dict[str, Any]:
    geometry = mask_geometry(mask)
    timestamp = frame.timestamp
    return {
        "name": name,
        "source": str(frame.source),
        "frame": "" if frame.index is None else frame.index,
        "timestamp_s": "" if timestamp is None else f"{timestamp:.3f}",
        "width": mask.shape[1],
        "height": mask.shape[0],
        "polyp_present": int(polyp_present(prob, decision, cut)),
        "foreground_fraction": f"{foreground_fraction(mask):.6f}",
        "components": len(geometry["boxes"]),
        "boxes": json.dumps([[b["x"], b["y"], b["width"], b["height"]]
                             for b in geometry["boxes"]], separators=(",", ":")),
        "max_probability": f"{float(prob.max()) if prob.size else 0.0:.4f}",
        "latency_ms": f"{latency_ms:.1f}",
        "mask": f"masks/{name}.png",
        "_geometry": geometry,
    }


def predict_files(
    bundle: OpenedModel,
    sources: Sequence[Source],
    out: Path,
    *,
    tta: Tta | str | None = None,
    batch_size: int = 8,
    threshold: float | None = None,
    overlay_style: Overlay | str = Overlay.OUTLINE,
    overlay_video: bool = True,
    on_progress: Callable[[int], None] | None = None,
) -> PredictSummary:
    """Segment every image and video frame of ``sources`` into ``out`` (see module docstring).

    A truncated video gives the masks of the frames it has and a line in the summary's
    ``problems``. ``threshold`` defaults to the model's; ``on_progress(n)`` is called after
    each batch with the number of images it held. A row's ``latency_ms`` is its batch's
    inference time (preprocessing, model, resizing back) divided by the batch's images.

    Args:
        bundle: the opened model.
        sources: the images and videos, in order.
        out: the output folder (see the module docstring).
        tta: ``None``/``none`` or ``rot90``.
        batch_size: images per forward pass.
        threshold: probability threshold in [0, 1]; ``None``: the model's.
        overlay_style: ``outline``, ``tint`` or ``none`` (no overlay files).
        overlay_video: write a video's overlays as ``videos/VIDEO.mp4``, not as JPGs.
        on_progress: called with the number of images of each finished batch; ``None``: silent.
    """
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    style = look_up_option(overlay_style, Overlay, "overlay", error=DataError)
    tta = look_up_tta(tta, error=DataError)
    cut = bundle.threshold if threshold is None else threshold
    if not 0.0 <= cut <= 1.0:
        raise DataError(f"threshold must lie in [0, 1], got {cut}")
    decision = decision_of(bundle.meta, tta)
    writer = _Writer(out, bundle.model_id, style, overlay_video,
                     decision_label(bundle.meta, tta))
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        for batch in _batches(iter_frames(sources, problems), batch_size):
            started = time.perf_counter()
            probs = segment(bundle, [frame.image for frame in batch], tta=tta)
            latency = (time.perf_counter() - started) * 1000.0 / len(batch)
            if not rows:  # made with the first results: a first unreadable input leaves none
                (out / "masks").mkdir(parents=True, exist_ok=True)
            for frame, prob in zip(batch, probs, strict=True):
                current = writer.current
                if current is None or not current.owns(frame):
                    current = writer.start(frame)
                base = current.name if frame.index is None else f"{current.name}_f{frame.index:06d}"
                name = base if frame.index is None else writer.names(base)
                mask = to_mask(prob, cut)
                row = _row(frame, name, prob, mask, cut, decision, latency)
                writer.add(frame, mask, row)
                rows.append(row)
            if on_progress is not None:
                on_progress(len(batch))
        writer.finish()
    except BaseException:
        writer.discard()
        raise
    csv_path = out / "predictions.csv"
    atomic_write_text(csv_path, _csv_text(rows, CSV_COLUMNS))
    mean = sum(float(r["foreground_fraction"]) for r in rows) / len(rows) if rows else 0.0
    return PredictSummary(
        images=len(rows), out=out, csv=csv_path, mean_foreground=mean, problems=problems,
        with_polyp=sum(int(r["polyp_present"]) for r in rows), videos=writer.videos,
    )
