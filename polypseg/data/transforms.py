"""Albumentations pipelines: deterministic resizing, training augmentation, normalisation.

Every geometric step moves the mask with the image, the mask by nearest-neighbour interpolation
and a zero fill, so it stays ``{0, 1}``. Pipelines return numpy arrays (image ``float32``
``(S, S, 3)`` normalised, mask ``uint8`` ``(S, S)``); :class:`~polypseg.data.dataset.
SegmentationDataset` turns them into tensors.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A
import cv2

import zoo
from polypseg.errors import DataError

#: ImageNet mean and standard deviation (RGB, 0-1 scale) used to normalise every image; a
#: checkpoint records them so that prediction normalises the same way.
NORMALIZE_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
NORMALIZE_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Training augmentation strengths (docs/design.md: flips, scale, colour; no rotation by default).
SCALE_RANGE = (0.85, 1.15)
SHIFT_FRACTION = 0.0625
BRIGHTNESS = 0.2
CONTRAST = 0.2
SATURATION = 0.1
HUE = 0.02

_FILL = {"border_mode": cv2.BORDER_CONSTANT, "fill": 0, "fill_mask": 0}


def check_size(size: int, depth: int | None = None) -> int:
    """Validate the square input side: positive, and divisible by ``2**depth`` when given
    (a U-Net of that depth halves it ``depth`` times: :func:`zoo.check_input_size`)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise DataError(f"image size must be a positive integer, got {size!r}")
    if depth is not None:
        try:
            zoo.check_input_size(size, depth, name="image size")
        except ValueError as err:
            raise DataError(str(err)) from None
    return size


def resize_steps(size: int, pad: bool = False) -> list[A.BasicTransform]:
    """Deterministic steps to a ``size`` x ``size`` image: stretch, or (``pad``) scale the long
    side to ``size`` and pad the short side with zeros, keeping the aspect ratio."""
    if pad:
        return [
            A.LongestMaxSize(
                max_size=size,
                interpolation=cv2.INTER_AREA,
                mask_interpolation=cv2.INTER_NEAREST,
            ),
            A.PadIfNeeded(min_height=size, min_width=size, position="center", **_FILL),
        ]
    return [
        A.Resize(size, size, interpolation=cv2.INTER_AREA, mask_interpolation=cv2.INTER_NEAREST)
    ]


def augment_steps(rot_aug: bool = False) -> list[A.BasicTransform]:
    """Random training steps: flips, scale and shift (no rotation), colour jitter; with
    ``rot_aug`` also a rotation by an angle drawn uniformly from [-180, 180] degrees."""
    steps: list[A.BasicTransform] = [
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.Affine(
            scale=SCALE_RANGE,
            translate_percent=(-SHIFT_FRACTION, SHIFT_FRACTION),
            rotate=0.0,
            shear=0.0,
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST,
            p=0.5,
            **_FILL,
        ),
    ]
    if rot_aug:
        steps.append(
            A.Rotate(
                limit=(-180, 180),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                p=1.0,
                **_FILL,
            )
        )
    steps.append(
        A.ColorJitter(
            brightness=BRIGHTNESS, contrast=CONTRAST, saturation=SATURATION, hue=HUE, p=0.8
        )
    )
    return steps


def build_transforms(
    size: int = 256,
    train: bool = False,
    rot_aug: bool = False,
    depth: int | None = None,
    *,
    pad: bool = False,
    normalize: bool = True,
    seed: int | None = None,
) -> A.Compose:
    """The pipeline for one image/mask pair: resize to ``size`` (stretch, or ``pad``), then in
    ``train`` mode augment (``rot_aug`` adds random rotation; it has no effect without ``train``,
    so one config can build both pipelines), then normalise with
    :data:`NORMALIZE_MEAN` / :data:`NORMALIZE_STD` (skip with ``normalize=False``).

    ``depth`` checks that ``size`` is divisible by ``2**depth`` (DataError otherwise).
    ``seed`` seeds the pipeline's own random state (albumentations ignores global seeds);
    :func:`~polypseg.data.dataset.make_loader` reseeds it per worker.

    Args:
        size: the output side in pixels.
        train: add the training augmentations.
        rot_aug: with ``train``: add rotation by up to ±180 degrees.
        depth: the U-Net depth ``size`` must fit; ``None``: unchecked.
        pad: letterbox to the square (keep the aspect ratio) instead of stretching.
        normalize: normalise with the ImageNet mean and std (false: keep [0, 1]).
        seed: seed of the pipeline's own random state; ``None``: unseeded.
    """
    check_size(size, depth)
    steps = resize_steps(size, pad)
    if train:
        steps += augment_steps(rot_aug)
    if normalize:
        steps.append(A.Normalize(mean=NORMALIZE_MEAN, std=NORMALIZE_STD, max_pixel_value=255.0))
    return A.Compose(steps, seed=seed)
