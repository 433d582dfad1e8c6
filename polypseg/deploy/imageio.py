"""Decoding untrusted image bytes with limits: format, pixel count, truncation.

The header is read first (PIL opens images lazily), so a decompression bomb, e.g. a small PNG
whose header claims 100000 x 100000 pixels, is refused before a single pixel is decoded. Each
refusal is an :class:`UploadError` carrying the HTTP status the server should answer with and a
message that names neither a file nor a path.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from polypseg.errors import PolypsegError

#: PIL format names accepted for uploads.
ALLOWED_FORMATS: frozenset[str] = frozenset({"PNG", "JPEG", "BMP", "TIFF"})

#: Default upper bound on decoded pixels (width x height): 40 megapixels.
DEFAULT_MAX_PIXELS = 40_000_000

#: Leading bytes of the allowed formats: a file that starts like one but does not open is
#: corrupt or truncated (422), not of an unsupported type (415).
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*")


class UploadError(PolypsegError):
    """An upload that cannot be segmented; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``data`` into an ``(H, W, 3)`` RGB ``uint8`` array, refusing what is unsafe.

    Raises :class:`UploadError` with status 400 (empty), 415 (not PNG/JPEG/BMP/TIFF),
    413 (more than ``max_pixels`` pixels, checked on the header before decoding) or
    422 (truncated or corrupt pixel data).
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise UploadError("empty upload: send the bytes of a PNG, JPEG, BMP or TIFF image", 400)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # lazy: reads the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadError(f"image too large: more than {max_pixels} pixels", 413) from None
    except UnidentifiedImageError:
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
        try:
            image.load()
            rgb = image.convert("RGB")
        except (OSError, ValueError, SyntaxError, EOFError):
            raise UploadError("truncated or corrupt image data", 422) from None
    return np.asarray(rgb, dtype=np.uint8).copy()


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a ``uint8`` array (``(H, W)`` gray or ``(H, W, 3)`` RGB)."""
    import cv2

    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", array)
    if not ok:  # pragma: no cover - cv2 encodes any uint8 array
        raise RuntimeError("PNG encoding failed")
    return buffer.tobytes()
