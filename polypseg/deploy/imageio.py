"""Decoding untrusted image bytes with limits: format, pixel count, truncation, memory.

The header is read first (PIL opens images lazily), so a decompression bomb, e.g. a small PNG
whose header claims 100000 x 100000 pixels, is refused before a single pixel is decoded; the
header also gives :attr:`ImageHeader.work_bytes`, the memory one request on that image needs,
which the server reserves from its budget *before* decoding. Pixels are then decoded by
:func:`polypseg.data.io.decode_stored` (OpenCV), the same code that ``predict`` and the dataset
readers use: 16-bit and floating-point pixels are scaled by their type's range, never clipped,
and pixels of unknown range are refused (415).

Each refusal is an :class:`UploadError` carrying the HTTP status the server should answer with
and a message that names neither a file nor a path.
"""

from __future__ import annotations

import io
import math
import mmap
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from polypseg.errors import DataError, PolypsegError

#: PIL format names accepted for uploads.
ALLOWED_FORMATS: frozenset[str] = frozenset({"PNG", "JPEG", "BMP", "TIFF"})

#: Default upper bound on decoded pixels (width x height): 40 megapixels.
DEFAULT_MAX_PIXELS = 40_000_000

#: Leading bytes of the allowed formats: a file that starts like one but does not open is
#: corrupt, truncated or a variant PIL cannot read (still 415/422), not some other type.
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*")

#: Bytes per pixel of the arrays made at full size after decoding, whatever the format: the
#: ``float32`` probability map (4) and the ``uint8`` mask (1) exist together while thresholding.
OUTPUT_BYTES_PER_PIXEL = 5

#: Memory a decoder holds beside the image (row buffers, zlib's window, libjpeg's tables): the
#: 40-megapixel PNG above peaks 4 MiB over twice its image.
DECODER_BYTES = 4 * 1024 * 1024

#: PNG IHDR colour type -> channels OpenCV decodes it to (palette -> BGR, gray+alpha -> BGRA).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 4, 6: 4}

#: Name the decoder gives the upload in messages (never a path).
UPLOAD = "upload"


class UploadError(PolypsegError):
    """An upload that cannot be segmented; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ImageHeader:
    """What the header of an upload says, before any pixel is decoded."""

    format: str
    width: int
    height: int
    #: Channels of the array OpenCV decodes (1, 3 or 4).
    channels: int
    #: Bytes per sample as stored (1 for 8-bit, 2 for 16-bit, 4 for 32-bit float).
    sample_bytes: int
    #: EXIF orientation (1: as stored; 5-8 swap width and height), applied on decoding.
    orientation: int = 1

    @property
    def upright_size(self) -> tuple[int, int]:
        """``(height, width)`` of the decoded image, its EXIF orientation applied."""
        if self.orientation >= 5:
            return self.width, self.height
        return self.height, self.width

    @property
    def pixels(self) -> int:
        """Width times height."""
        return self.width * self.height

    @property
    def work_bytes(self) -> int:
        """Most bytes one request on this image holds at once (its body aside).

        Decoding: the array as stored (``channels * sample_bytes`` per pixel) twice (OpenCV's
        decoders fill a buffer of their own and convert it, and the in-place BGR-to-RGB swap
        copies too: a 40-megapixel RGB PNG peaks at 232 MiB, not 114), once more for its
        upright copy when the EXIF orientation turns it, its 8-bit copy when the samples are
        wider, its RGB form unless it already has 3 channels, and the decoder's own state
        (:data:`DECODER_BYTES`). The decoded image is released before inference; then the
        probability map and the mask, both at full size (:data:`OUTPUT_BYTES_PER_PIXEL`).
        """
        stored = self.channels * self.sample_bytes * (3 if self.orientation != 1 else 2)
        eight_bit = self.channels if self.sample_bytes > 1 else 0
        rgb = 3 if self.channels != 3 else 0
        decoding = self.pixels * (stored + eight_bit + rgb) + DECODER_BYTES
        return max(decoding, self.pixels * OUTPUT_BYTES_PER_PIXEL)


def _sample_layout(image: object, data: bytes) -> tuple[int, int]:
    """``(channels, sample_bytes)`` of the decoded array, from the header only."""
    fmt = image.format  # type: ignore[attr-defined]
    if fmt == "PNG" and len(data) >= 26:  # IHDR: bit depth at byte 24, colour type at 25
        depth, colour = data[24], data[25]
        return _PNG_CHANNELS.get(colour, 4), 2 if depth == 16 else 1
    if fmt == "TIFF":
        tags = getattr(image, "tag_v2", {})
        bits = tags.get(258) or (8,)
        bits = bits if isinstance(bits, tuple) else (bits,)
        samples = int(tags.get(277) or len(bits))
        return max(1, samples), max(1, math.ceil(max(int(b) for b in bits) / 8))
    bands = len(image.getbands())  # type: ignore[attr-defined]
    return (1 if bands == 1 else 3 if bands == 3 else 4), 1


class _MapFile(io.RawIOBase):
    """A read-only file over a buffer (the server's body maps) without copying it; like
    ``io.BytesIO``, it seeks past the end (a memory map's own ``seek`` refuses to)."""

    def __init__(self, data: mmap.mmap) -> None:
        super().__init__()
        self._view = memoryview(data)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek value {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        count = max(0, min(len(buffer), len(self._view) - self._pos))
        buffer[:count] = self._view[self._pos : self._pos + count]
        self._pos += count
        return count

    def close(self) -> None:
        self._view.release()  # so that the map can be closed
        super().close()


def _stream(data: bytes | mmap.mmap) -> io.RawIOBase | io.BytesIO:
    """A file object over ``data`` without copying a memory map (the server's bodies)."""
    return _MapFile(data) if isinstance(data, mmap.mmap) else io.BytesIO(data)


def read_header(data: bytes | mmap.mmap, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """The checked header of ``data``: format, size and sample layout; nothing is decoded.

    Raises :class:`UploadError` with status 400 (empty), 415 (not PNG/JPEG/BMP/TIFF, or a
    variant that cannot be read), 413 (more than ``max_pixels`` pixels) or 422 (corrupt
    header).
    """
    stream = _stream(data)
    try:
        return _checked_header(data, stream, max_pixels)
    finally:
        stream.close()


def _checked_header(
    data: bytes | mmap.mmap, stream: io.RawIOBase | io.BytesIO, max_pixels: int
) -> ImageHeader:
    from PIL import Image, UnidentifiedImageError

    from polypseg.data.io import orientation_of

    if not data:
        raise UploadError("empty upload: send the bytes of a PNG, JPEG, BMP or TIFF image", 400)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # PIL's notes on odd TIFF tags
            image = Image.open(stream)  # lazy: reads the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadError(f"image too large: more than {max_pixels} pixels", 413) from None
    except UnidentifiedImageError:
        if bytes(data[:8]).startswith(_SIGNATURES):
            raise UploadError(
                "unsupported or corrupt image: starts like PNG, JPEG, BMP or TIFF but cannot be "
                "read (e.g. a floating-point RGB TIFF, or a truncated header)",
                415,
            ) from None
        raise UploadError("not a supported image: PNG, JPEG, BMP or TIFF expected", 415) from None
    except (OSError, ValueError, SyntaxError):
        raise UploadError("corrupt image header", 422) from None
    with image:
        if image.format not in ALLOWED_FORMATS:
            raise UploadError(
                f"unsupported image format {image.format}: PNG, JPEG, BMP or TIFF expected", 415
            )
        width, height = image.size
        if width <= 0 or height <= 0:
            raise UploadError("image has no pixels", 422)
        if width * height > max_pixels:
            raise UploadError(
                f"image too large: {width}x{height} pixels, at most {max_pixels} allowed", 413
            )
        channels, sample_bytes = _sample_layout(image, data)
        orientation = orientation_of(image)
    return ImageHeader(str(image.format), width, height, channels, sample_bytes, orientation)


def decode_pixels(data: bytes | mmap.mmap, header: ImageHeader) -> np.ndarray:
    """Decode ``data`` (whose :func:`read_header` is ``header``) into ``(H, W, 3)`` RGB ``uint8``,
    upright for its EXIF orientation (as ``predict`` reads files and browsers show them).

    Raises :class:`UploadError` 422 for truncated or corrupt pixel data (or a size other than
    the header's) and 415 for pixels of an unknown range or channel count.
    """
    from polypseg.data.io import as_rgb, decode_stored

    raw = np.frombuffer(data, dtype=np.uint8)
    try:
        rgb = as_rgb(decode_stored(raw, UPLOAD, header.orientation), UPLOAD)
    except DataError as err:
        message = str(err).removeprefix(f"{UPLOAD}: ")
        if "not a readable image" in message:
            raise UploadError("truncated or corrupt image data", 422) from None
        raise UploadError(f"unsupported pixels: {message}", 415) from None
    if rgb.shape[:2] != header.upright_size:
        raise UploadError("corrupt image: its pixel data do not match its header's size", 422)
    return rgb


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """:func:`read_header` then :func:`decode_pixels`: ``(H, W, 3)`` RGB ``uint8``."""
    return decode_pixels(data, read_header(data, max_pixels))


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a ``uint8`` array (``(H, W)`` gray or ``(H, W, 3)`` RGB)."""
    import cv2

    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", array)
    if not ok:  # pragma: no cover - cv2 encodes any uint8 array
        raise RuntimeError("PNG encoding failed")
    return buffer.tobytes()
