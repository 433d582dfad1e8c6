"""Reading images and masks: RGB ``uint8`` images and ``{0, 1}`` ``uint8`` masks.

OpenCV decodes every format the datasets use (JPEG, PNG, TIFF, BMP) but returns BGR(A) or
grayscale arrays, sometimes 16-bit or floating point; this module turns each into the one form
the rest of the package expects (scaling pixels by their type's range, never clipping), and
raises :class:`~polypseg.errors.DataError` naming the file otherwise. ``predict`` and the HTTP
server decode with the same functions, so a file gives the same pixels everywhere.

EXIF orientation is applied on decoding (:func:`orient`): a JPEG from a phone or an endoscopy
workstation that stores its pixels sideways with orientation 6 gives the upright image a
browser shows, for images and masks alike. OpenCV's ``IMREAD_UNCHANGED`` ignores the tag, so it
is read with Pillow, from the header only (:func:`orientation_of`); TIFF's orientation tag is
applied by OpenCV's decoder itself.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from polypseg.data.formats import LOSSY_SUFFIXES
from polypseg.data.layouts import Pair
from polypseg.errors import DataError

#: Mask pixels above this value are foreground.
MASK_THRESHOLD = 127


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def not_a_file(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is not a regular file one can read (``None`` when it is one).

    Distinguishes a missing path from a broken symbolic link, a folder, and special files
    (FIFO, device, socket), which would block or never end if read: a symbolic link to
    ``/dev/zero`` is "a character device", not "no such file".
    """
    file = Path(path)
    try:
        mode = file.stat().st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if file.is_symlink() else "no such file"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    via = " (through a symbolic link)" if file.is_symlink() else ""
    for test, kind in _SPECIAL_KINDS:
        if test(mode):
            return f"{kind}{via}, not a regular file"
    return f"not a regular file{via}"


def to_uint8(array: np.ndarray, source: str | os.PathLike[str]) -> np.ndarray:
    """Pixels as ``uint8``, scaled by their type's range; :class:`DataError` where no scale is
    defined. Never clips silently.

    ``uint8`` as it is; ``uint16`` divided by 257 (65535 -> 255, rounded); floating point in
    ``[0, 1]`` times 255 (rounded). Floating point outside ``[0, 1]`` (or not finite) and other
    integer types are refused: their range is not known, so any scaling would be a guess.
    """
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return cv2.convertScaleAbs(array, alpha=1.0 / 257.0)  # rounds; no float64 copy
    if np.issubdtype(array.dtype, np.floating):
        values = array if array.dtype in (np.float32, np.float64) else array.astype(np.float32)
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if not (np.isfinite(low) and np.isfinite(high) and low >= 0.0 and high <= 1.0):
            raise DataError(
                f"{source}: floating-point pixels in [{low:.4g}, {high:.4g}]; only floating-point "
                "images scaled to [0, 1] are accepted (or 8/16-bit integers)"
            )
        return cv2.convertScaleAbs(values, alpha=255.0)
    raise DataError(
        f"{source}: unsupported pixel type {array.dtype} "
        "(expected 8 or 16-bit unsigned integers, or floating point in [0, 1])"
    )


#: EXIF / TIFF tag of the orientation.
ORIENTATION_TAG = 0x0112

#: How each EXIF orientation (2-8) turns stored pixels into the upright image (as Pillow's
#: ``ImageOps.exif_transpose``): mirrors, rotations, transpose and transverse.
_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def orientation_of(image: Any) -> int:
    """The EXIF orientation (1-8) left to apply to what OpenCV decodes, for an opened Pillow
    image, from its header only (no pixel is decoded): a JPEG's or WebP's EXIF block, a PNG's
    ``eXIf`` chunk before its pixels. 1 (as decoded) when absent or invalid, and for TIFF,
    whose orientation tag OpenCV's decoder applies itself (Pillow's size is upright too)."""
    from PIL import Image

    if image.format == "TIFF":
        return 1
    try:
        exif = image.info.get("exif")
        if not exif:
            return 1
        tags = Image.Exif()
        tags.load(exif)
        value = tags.get(ORIENTATION_TAG)
    except Exception:  # a malformed EXIF block: the pixels as stored
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def _jpeg_has_exif(data: memoryview) -> bool:
    """Whether a JPEG's header segments (those before its first scan) hold an EXIF block."""
    pos, size = 2, len(data)
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan, end of image: no EXIF before
            return False
        if marker == 0xE1 and bytes(data[pos + 4 : pos + 10]) == b"Exif\0\0":
            return True
        pos += 2 + (data[pos + 2] << 8 | data[pos + 3])
    return False


def _png_has_exif(data: memoryview) -> bool:
    """Whether a PNG has an ``eXIf`` chunk before its pixels (where readers look for it)."""
    pos, size = 8, len(data)
    while pos + 8 <= size:
        kind = bytes(data[pos + 4 : pos + 8])
        if kind == b"eXIf":
            return True
        if kind in (b"IDAT", b"IEND"):
            return False
        pos += 12 + int.from_bytes(data[pos : pos + 4], "big")
    return False


def exif_orientation(raw: np.ndarray | bytes) -> int:
    """The EXIF orientation (1-8) of encoded image bytes left to apply after OpenCV decodes
    them (:func:`orientation_of`); 1 when absent or unreadable.

    Only a JPEG or PNG whose header holds an EXIF block is opened with Pillow (the markers and
    chunks are walked first, in microseconds): the others read as decoded.
    """
    data = memoryview(raw).cast("B")
    if bytes(data[:2]) == b"\xff\xd8":
        if not _jpeg_has_exif(data):
            return 1
    elif bytes(data[:8]) == b"\x89PNG\r\n\x1a\n":
        if not _png_has_exif(data):
            return 1
    else:  # TIFF: OpenCV applies its tag; BMP has none
        return 1
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(raw)) as image:  # lazy: the header only
                return orientation_of(image)
    except Exception:  # not an image Pillow reads (OpenCV may still): as stored
        return 1


def orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """``array`` (``(H, W)`` or ``(H, W, C)``) turned upright for its EXIF ``orientation``
    (a contiguous copy unless it is 1)."""
    turn = _ORIENT.get(orientation)
    return array if turn is None else np.ascontiguousarray(turn(array))


def _imdecode(
    raw: np.ndarray, source: str | os.PathLike[str], orientation: int | None = None
) -> np.ndarray:
    array = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if array is None:
        raise DataError(f"{source}: not a readable image (empty, corrupt or unsupported format)")
    return orient(array, exif_orientation(raw) if orientation is None else orientation)


def decode_stored(
    raw: np.ndarray, source: str | os.PathLike[str], orientation: int | None = None
) -> np.ndarray:
    """Decode encoded image bytes (a ``uint8`` buffer): any channel count, 8-bit (see
    :func:`to_uint8`), upright for its EXIF orientation (read from ``raw`` unless given);
    :class:`DataError` naming ``source`` if they do not decode."""
    return to_uint8(_imdecode(raw, source, orientation), source)


def _decode(path: str | os.PathLike[str], keep_16bit_binary: bool = False) -> np.ndarray:
    """Decode ``path`` as it is stored (any channel count), as 8-bit; DataError if unreadable.

    ``keep_16bit_binary``: a 16-bit file whose values are only 0 and 1 (a binary mask) keeps
    them instead of being scaled to 0.
    """
    file = Path(path)
    reason = not_a_file(file)
    if reason is not None:
        raise DataError(f"{file}: {reason}")
    try:
        raw = np.fromfile(file, dtype=np.uint8)
    except OSError as err:
        raise DataError(f"{file}: cannot read file ({err.strerror or err})") from err
    array = _imdecode(raw, file)
    if keep_16bit_binary and array.dtype == np.uint16 and array.size and int(array.max()) <= 1:
        return array.astype(np.uint8)
    return to_uint8(array, file)


def as_rgb(array: np.ndarray, source: str | os.PathLike[str]) -> np.ndarray:
    """An 8-bit decoded image (OpenCV's BGR(A) or gray) as ``(H, W, 3)`` RGB.

    Grayscale is repeated over three channels; an alpha channel is dropped. A 3-channel array
    is converted in place.
    """
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2RGB)
    channels = array.shape[2]
    if channels == 1:
        return cv2.cvtColor(array[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 2:  # gray + alpha
        return cv2.cvtColor(np.ascontiguousarray(array[:, :, 0]), cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(array, cv2.COLOR_BGR2RGB, dst=array)
    if channels == 4:
        return cv2.cvtColor(array, cv2.COLOR_BGRA2RGB)
    raise DataError(f"{source}: image with {channels} channels (expected 1, 3 or 4)")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image as an ``(H, W, 3)`` RGB ``uint8`` array.

    Grayscale images are repeated over three channels; an alpha channel is dropped; 16-bit
    and floating-point pixels are scaled by their range (:func:`to_uint8`).
    Raises DataError naming the file when it cannot be decoded.
    """
    return as_rgb(_decode(path), path)


def read_mask_raw(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a mask as stored, reduced to one ``(H, W)`` ``uint8`` channel (not thresholded).

    Colour masks are reduced by the maximum over their colour channels (alpha is ignored), so
    a white, red or green polyp on black all give the same mask.
    """
    array = _decode(path, keep_16bit_binary=True)
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
