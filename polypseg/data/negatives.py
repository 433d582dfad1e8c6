"""Background-only views ("negatives"): crops of polyp images that do not meet the polyp.

Every image of Kvasir-SEG and CVC-ClinicDB shows a polyp, so a model trained on them alone is
never asked to answer "nothing here". A negative is a square crop of such an image, at a random
position and scale, that keeps clear of the mask (by :data:`MARGIN` of the shorter side) and is
mostly not the black frame around the endoscope's field of view; resized to the model's input
it has an empty target. A folder of the user's own polyp-free frames adds whole frames.

* :func:`find_crop` draws a crop box from a ``numpy`` generator (pure: the same generator state
  gives the same box).
* :class:`NegativeSource` makes the ``(image, empty mask)`` of negative number ``k`` from a
  generator, reading the training images (and the frames of ``--negatives-dir``).
* :class:`NegativeMix` appends ``count`` negatives to a :class:`~polypseg.data.dataset.
  SegmentationDataset` of positives: item ``i < len(positives)`` is the positive, every later
  item a negative drawn from ``(seed, epoch, i)``, then augmented by the positives' pipeline.
* :func:`fixed_negatives` makes the evaluation negatives: one per image, the box a function of
  ``(seed, stem)`` only, so every evaluation of a split sees the same ones (recorded).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polypseg.errors import DataError

#: Crop side as a fraction of the image's shorter side: drawn uniformly from this range.
SCALE_RANGE: tuple[float, float] = (0.2, 0.6)
#: Clearance between a crop and the mask, as a fraction of the image's shorter side.
MARGIN = 0.02
#: Pixels darker than this (luma 0-255) are the black frame of the field of view...
DARK_LEVEL = 16
#: ...and a crop may be at most this share of them.
MAX_DARK_SHARE = 0.25
#: Candidate boxes drawn per image (vectorised); none clear: the image gives no negative.
CANDIDATES = 256
#: Images tried in turn for one training negative before giving up.
SOURCE_TRIES = 8
#: Seed of the evaluation negatives (fixed: every run and evaluation of a split shares them).
EVAL_SEED = 0
#: Prefix of a negative's stem (``neg:`` + the stem of the image it was cut from).
STEM_PREFIX = "neg:"


@dataclass(frozen=True)
class Box:
    """A crop ``image[top:top + side, left:left + side]`` (pixels of the full image)."""

    top: int
    left: int
    side: int

    def as_list(self) -> list[int]:
        """``[x0, y0, x1, y1]`` (x1, y1 excluded), the form the evaluation records."""
        return [self.left, self.top, self.left + self.side, self.top + self.side]


def _integral(binary: np.ndarray) -> np.ndarray:
    """Summed-area table of a boolean ``(H, W)`` map with a zero first row and column:
    ``(H + 1, W + 1)`` (OpenCV's ``integral``: a tenth of numpy's double ``cumsum``)."""
    import cv2

    return cv2.integral(binary.view(np.uint8), sdepth=cv2.CV_32S)


def _box_sums(table: np.ndarray, y0: np.ndarray, x0: np.ndarray, y1: np.ndarray,
              x1: np.ndarray) -> np.ndarray:
    return table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]


def find_crop(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    scale_range: tuple[float, float] = SCALE_RANGE,
    margin: float = MARGIN,
) -> Box | None:
    """A square box of ``image`` that does not meet ``mask`` (nor come within ``margin`` of
    the shorter side of it) and is at most :data:`MAX_DARK_SHARE` black frame, or ``None``.

    Args:
        image: ``uint8`` RGB ``(H, W, 3)``.
        mask: ``(H, W)``, foreground where non-zero.
        rng: the generator of the draw (:data:`CANDIDATES` boxes are drawn at once; the first
            clear one is taken, so the result is a function of the generator's state).
        scale_range: box side as a fraction of ``min(H, W)``.
        margin: clearance to the mask as a fraction of ``min(H, W)``.
    """
    height, width = mask.shape[:2]
    short = min(height, width)
    sides = np.maximum(8, np.round(rng.uniform(*scale_range, CANDIDATES) * short)).astype(int)
    sides = np.minimum(sides, short)
    tops = (rng.random(CANDIDATES) * (height - sides + 1)).astype(int)
    lefts = (rng.random(CANDIDATES) * (width - sides + 1)).astype(int)
    pad = round(margin * short)
    fg = _integral(np.ascontiguousarray(mask) > 0)
    y0, x0 = np.maximum(tops - pad, 0), np.maximum(lefts - pad, 0)
    y1, x1 = np.minimum(tops + sides + pad, height), np.minimum(lefts + sides + pad, width)
    clear = _box_sums(fg, y0, x0, y1, x1) == 0
    if not clear.any():
        return None
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    dark = _integral(grey < DARK_LEVEL)
    dark_share = _box_sums(dark, tops, lefts, tops + sides, lefts + sides) / (sides * sides)
    ok = np.flatnonzero(clear & (dark_share <= MAX_DARK_SHARE))
    if ok.size == 0:
        return None
    i = int(ok[0])
    return Box(int(tops[i]), int(lefts[i]), int(sides[i]))


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    """The pixels of ``box`` (a contiguous copy)."""
    return np.ascontiguousarray(image[box.top : box.top + box.side, box.left : box.left + box.side])


def list_frames(folder: str | Path) -> list[Path]:
    """The image files of a folder of polyp-free frames (sorted); :class:`DataError` when it
    is missing or holds none."""
    from polypseg.data.formats import IMAGE_SUFFIXES

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"negatives folder not found: {folder}")
    frames = sorted(p for p in folder.iterdir()
                    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not frames:
        raise DataError(f"negatives folder {folder} holds no images "
                        f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    return frames


class NegativeSource:
    """Negatives drawn from polyp images (crops clear of the mask) and polyp-free frames.

    Args:
        pairs: image/mask pairs (:class:`~polypseg.data.layouts.Pair`) to crop from.
        frames: image files without polyps, used whole.
    """

    def __init__(self, pairs: Sequence[Any], frames: Sequence[Path] = ()) -> None:
        if not pairs and not frames:
            raise DataError("negatives need polyp images or a folder of polyp-free frames")
        self.pairs = list(pairs)
        self.frames = list(frames)

    def __len__(self) -> int:
        return len(self.pairs) + len(self.frames)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """``(uint8 RGB image, name)`` of one negative: a source drawn from ``rng``, then its
        crop (up to :data:`SOURCE_TRIES` sources when crops do not fit); a whole frame of
        ``frames`` is used as it is. :class:`DataError` when no tried source gives one."""
        from polypseg.data.io import read_image, read_pair

        start = int(rng.integers(len(self)))
        for attempt in range(SOURCE_TRIES):
            k = (start + attempt) % len(self)
            if k >= len(self.pairs):
                frame = self.frames[k - len(self.pairs)]
                return read_image(frame), f"{STEM_PREFIX}{frame.stem}"
            pair = self.pairs[k]
            image, mask = read_pair(pair)
            box = find_crop(image, mask, rng)
            if box is not None:
                return crop(image, box), f"{STEM_PREFIX}{pair.stem}"
        raise DataError(f"no background crop found in {SOURCE_TRIES} images in a row "
                        "(do the masks cover the images?)")


def negative_count(n_positives: int, fraction: float) -> int:
    """Negatives to add to ``n_positives`` images so that they are ``fraction`` of the epoch."""
    if not 0 <= fraction < 1:
        raise DataError(f"negatives fraction must be in [0, 1), got {fraction}")
    return round(n_positives * fraction / (1.0 - fraction))


def _seed_of(*parts: object) -> int:
    text = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little")


class NegativeMix:
    """``positives`` followed by ``count`` negatives (a torch map-style dataset).

    Item ``i >= len(positives)`` is a negative drawn from ``(seed, epoch, i)`` by
    :meth:`NegativeSource.draw`, resized to the input by the positives' own pipeline (its first
    step) and augmented like them, with an all-zero mask: ``{'image', 'mask', 'stem'}`` as
    :class:`~polypseg.data.dataset.SegmentationDataset` returns. ``transform`` is the positives'
    pipeline, so :class:`~polypseg.training.sampling.SeededAugmentation` reseeds it per item;
    call :meth:`set_epoch` before each epoch (``SeededAugmentation.set_epoch`` does).

    Args:
        positives: a ``SegmentationDataset``.
        source: where negatives come from.
        count: negatives per epoch.
        seed: the run's seed.
    """

    def __init__(self, positives: Any, source: NegativeSource, count: int, seed: int) -> None:
        self.positives = positives
        self.source = source
        self.count = int(count)
        self.seed = int(seed)
        self.epoch = 0

    @property
    def transform(self) -> Any:
        """The positives' albumentations pipeline (shared)."""
        return self.positives.transform

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose negatives :meth:`__getitem__` draws."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.positives) + self.count

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i < len(self.positives):
            return self.positives[i]
        if i >= len(self):
            raise IndexError(i)
        rng = np.random.default_rng(_seed_of("train-negative", self.seed, self.epoch, i))
        image, stem = self.source.draw(rng)
        return empty_item(image, self.transform, stem)


def empty_item(image: np.ndarray, transform: Any, stem: str) -> dict[str, Any]:
    """The dataset item of ``image`` with an empty mask, through ``transform``."""
    import torch

    mask = np.zeros(image.shape[:2], dtype=np.uint8)
    out = transform(image=image, mask=mask)
    tensor = torch.as_tensor(np.asarray(out["image"])).permute(2, 0, 1)
    side = tensor.shape[1:]
    return {
        "image": tensor.to(torch.float32).contiguous(),
        "mask": torch.zeros((1, *side), dtype=torch.float32),
        "stem": stem,
    }


@dataclass(frozen=True)
class FixedNegative:
    """One evaluation negative: the crop ``box`` of the image ``stem``."""

    stem: str
    pair: Any
    box: Box


def fixed_negatives(pairs: Sequence[Any], seed: int = EVAL_SEED) -> tuple[list[FixedNegative],
                                                                           list[str]]:
    """One negative per image where a clear crop exists, its box drawn from ``(seed, stem)``.

    Returns the negatives and the stems of the images that gave none (the mask leaves no clear
    square of the smallest scale). The same pairs and seed always give the same boxes, whatever
    other images are in the set.
    """
    from polypseg.data.io import read_pair

    negatives, skipped = [], []
    for pair in pairs:
        image, mask = read_pair(pair)
        box = find_crop(image, mask, np.random.default_rng(_seed_of("eval-negative", seed,
                                                                     pair.stem)))
        if box is None:
            skipped.append(pair.stem)
        else:
            negatives.append(FixedNegative(pair.stem, pair, box))
    return negatives, skipped


class FixedNegativeDataset:
    """Evaluation items of :func:`fixed_negatives` (resized, normalised, not augmented).

    Args:
        negatives: from :func:`fixed_negatives`.
        transform: the evaluation pipeline (``build_transforms(size, train=False)``).
    """

    def __init__(self, negatives: Sequence[FixedNegative], transform: Any) -> None:
        self.negatives = list(negatives)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.negatives)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from polypseg.data.io import read_image

        negative = self.negatives[i]
        image = read_image(negative.pair.image)
        return empty_item(crop(image, negative.box), self.transform, STEM_PREFIX + negative.stem)
