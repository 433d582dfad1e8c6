"""EXIF orientation is applied when images and masks are read (``polypseg.data.io``): every
orientation gives the upright pixels Pillow's ``ImageOps.exif_transpose`` gives, on fixtures
made here (PNG with an ``eXIf`` chunk, a JPEG as phones write them, a TIFF tag)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from polypseg.data.io import exif_orientation, read_image, read_mask


def asymmetric(height: int = 20, width: int = 32) -> np.ndarray:
    """An RGB image no flip or rotation maps onto itself: a gradient and a corner block."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 7 % 256, yy * 11 % 256, (xx + 2 * yy) % 256], axis=-1)
    image[:4, :6] = (255, 0, 0)
    return image.astype(np.uint8)


def with_orientation(image: np.ndarray, orientation: int, fmt: str) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    options = {"quality": 95} if fmt == "JPEG" else {}
    if fmt == "TIFF":
        options = {"tiffinfo": {0x0112: orientation}}
    else:
        options["exif"] = exif.tobytes()
    Image.fromarray(image).save(buffer, fmt, **options)
    return buffer.getvalue()


def upright(data: bytes) -> np.ndarray:
    """The reference: what Pillow (and browsers) show."""
    return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_is_applied(tmp_path: Path, orientation: int, fmt: str) -> None:
    data = with_orientation(asymmetric(), orientation, fmt)
    path = tmp_path / f"image.{fmt.lower()}"
    path.write_bytes(data)
    # what is left to apply after OpenCV: its TIFF decoder applies the tag itself
    assert exif_orientation(np.frombuffer(data, np.uint8)) == (orientation if fmt == "PNG" else 1)
    expected = upright(data)
    assert expected.shape == ((32, 20, 3) if orientation >= 5 else (20, 32, 3))
    np.testing.assert_array_equal(read_image(path), expected)  # lossless: exact


def test_a_sideways_jpeg_is_read_upright(tmp_path: Path) -> None:
    """The issue's case: 256 x 200 pixels stored, orientation 6, shown 200 x 256."""
    image = np.repeat(np.repeat(asymmetric(25, 32), 8, axis=0), 8, axis=1)  # 200 x 256
    data = with_orientation(image, 6, "JPEG")
    path = tmp_path / "phone.jpg"
    path.write_bytes(data)
    read = read_image(path)
    assert read.shape == (256, 200, 3)
    difference = np.abs(read.astype(int) - upright(data).astype(int))
    assert difference.mean() < 2.0  # two JPEG decoders: within rounding


def test_masks_turn_with_their_images(tmp_path: Path) -> None:
    mask = np.zeros((20, 32), np.uint8)
    mask[:4, :6] = 255
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(mask).save(tmp_path / "mask.png", exif=exif.tobytes())
    read = read_mask(tmp_path / "mask.png")
    expected = np.rot90(mask, 1) > 0  # orientation 8: a quarter turn counter-clockwise
    np.testing.assert_array_equal(read, expected.astype(np.uint8))


def test_no_or_broken_exif_reads_as_stored(tmp_path: Path) -> None:
    image = asymmetric()
    plain = io.BytesIO()
    Image.fromarray(image).save(plain, "PNG")
    assert exif_orientation(plain.getvalue()) == 1
    assert exif_orientation(b"not an image") == 1
    odd = with_orientation(image, 9, "PNG")  # out of range: ignored
    (tmp_path / "odd.png").write_bytes(odd)
    np.testing.assert_array_equal(read_image(tmp_path / "odd.png"), image)
