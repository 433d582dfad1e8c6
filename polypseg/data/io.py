"""Reading images and masks: RGB ``uint8`` images and ``{0, 1}`` ``uint8`` masks.

OpenCV decodes every format the datasets use (JPEG, PNG, TIFF, BMP) but returns BGR(A) or
grayscale arrays, sometimes 16-bit; this module turns each into the one form the rest of the
package expects, and raises :class:`~polypseg.errors.DataError` naming the file otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from polypseg.errors import DataError

if TYPE_CHECKING:
    from polypseg.data.layouts import Pair

#: File name suffixes (lower case) read as images or masks; anything else in a folder is ignored.
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})

#: Lossy formats: a mask stored in one of them is never read as a 0/1 mask (see :func:`binarize`).
LOSSY_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg"})

#: Mask pixels above this value are foreground.
MASK_THRESHOLD = 127


def _decode(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode ``path`` as it is stored (any channel count), as 8-bit; DataError if unreadable."""
    file = Path(path)
    try:
        raw = np.fromfile(file, dtype=np.uint8)
    except OSError as err:
        raise DataError(f"{file}: cannot read file ({err.strerror or err})") from err
    array = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if array is None:
        raise DataError(f"{file}: not a readable image (empty, corrupt or unsupported format)")
    if array.dtype == np.uint16:
        array = np.round(array / 257.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise DataError(f"{file}: unsupported pixel type {array.dtype} (expected 8 or 16 bit)")
    return array


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image as an ``(H, W, 3)`` RGB ``uint8`` array.

    Grayscale images are repeated over three channels; an alpha channel is dropped.
    Raises DataError naming the file when it cannot be decoded.
    """
    array = _decode(path)
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2RGB)
    channels = array.shape[2]
    if channels == 1:
        return cv2.cvtColor(array[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 2:  # gray + alpha
        return cv2.cvtColor(np.ascontiguousarray(array[:, :, 0]), cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(array, cv2.COLOR_BGRA2RGB)
    raise DataError(f"{path}: image with {channels} channels (expected 1, 3 or 4)")


def read_mask_raw(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a mask as stored, reduced to one ``(H, W)`` ``uint8`` channel (not thresholded).

    Colour masks are reduced by the maximum over their colour channels (alpha is ignored), so
    a white, red or green polyp on black all give the same mask.
    """
    array = _decode(path)
    if array.ndim == 2:
        return array
    reduced = array[:, :, 0]
    for channel in range(1, min(3, array.shape[2])):  # per-channel maximum: ndarray.max(axis=2)
        reduced = np.maximum(reduced, array[:, :, channel])  # is ~10x slower on (H, W, 3)
    return np.ascontiguousarray(reduced)


def binarize(raw: np.ndarray, path: str | os.PathLike[str] = "") -> np.ndarray:
    """Threshold a raw mask at :data:`MASK_THRESHOLD` into ``{0, 1}`` ``uint8``.

    A mask in a lossless format (PNG, TIFF, BMP) whose values are only 0 and 1 is already
    binary and is returned as it is; thresholding it would empty it.
    """
    lossless = Path(path).suffix.lower() not in LOSSY_SUFFIXES
    if lossless and raw.size and int(raw.max()) <= 1:
        return raw.astype(np.uint8, copy=True)
    return (raw > MASK_THRESHOLD).astype(np.uint8)


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a mask as an ``(H, W)`` ``uint8`` array of 0 (background) and 1 (polyp)."""
    return binarize(read_mask_raw(path), path)


def size_mismatch(image: np.ndarray, mask: np.ndarray, pair: Pair) -> str | None:
    """A message naming both files when ``image`` and ``mask`` differ in size, else None."""
    if image.shape[:2] == mask.shape[:2]:
        return None
    ih, iw = image.shape[:2]
    mh, mw = mask.shape[:2]
    return f"size mismatch: image {pair.image} is {iw}x{ih} but mask {pair.mask} is {mw}x{mh}"


def read_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """Read the image and mask of ``pair``; DataError naming both files if their sizes differ."""
    image = read_image(pair.image)
    mask = read_mask(pair.mask)
    mismatch = size_mismatch(image, mask, pair)
    if mismatch:
        raise DataError(mismatch)
    return image, mask
