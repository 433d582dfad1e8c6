"""Reading images and masks: RGB order, channel conversions, thresholds, errors naming files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from data_helpers import write_rgb

from polypseg.data.io import read_image, read_mask, read_pair
from polypseg.data.layouts import Pair
from polypseg.errors import DataError


def test_read_image_returns_rgb_not_bgr(tmp_path: Path) -> None:
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 200  # red
    rgb[1, 2] = (10, 20, 250)  # one blue pixel
    path = write_rgb(tmp_path / "a.png", rgb)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (4, 6, 3)
    np.testing.assert_array_equal(image, rgb)


def test_grayscale_image_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8)
    image = read_image(write_rgb(tmp_path / "g.png", gray))
    assert image.shape == (6, 8, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], gray)


def test_rgba_image_drops_alpha(tmp_path: Path) -> None:
    rgba = np.zeros((5, 5, 4), np.uint8)
    rgba[..., 1] = 180
    rgba[..., 3] = 7
    image = read_image(write_rgb(tmp_path / "rgba.png", rgba))
    assert image.shape == (5, 5, 3)
    np.testing.assert_array_equal(image[..., 1], 180)
    np.testing.assert_array_equal(image[..., [0, 2]], 0)


def test_sixteen_bit_image_is_scaled_to_eight_bit(tmp_path: Path) -> None:
    deep = np.full((3, 3), 65535, np.uint16)
    deep[0, 0] = 257 * 100
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), deep)
    image = read_image(path)
    assert image.dtype == np.uint8
    assert image[0, 0, 0] == 100 and image[2, 2, 2] == 255


@pytest.mark.parametrize("content", [b"", b"\xff\xd8\xff\xe0 not really a jpeg" * 10])
def test_corrupt_or_empty_file_names_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"broken\.jpg"):
        read_image(path)
    with pytest.raises(DataError, match=r"broken\.jpg"):
        read_mask(path)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere\.png"):
        read_image(tmp_path / "nowhere.png")


def test_jpeg_mask_is_thresholded_at_127(tmp_path: Path) -> None:
    raw = np.zeros((16, 16), np.uint8)
    raw[4:12, 4:12] = 255
    mask = read_mask(write_rgb(tmp_path / "m.jpg", raw))
    assert set(np.unique(mask)) <= {0, 1}
    assert mask[8, 8] == 1 and mask[0, 0] == 0
    assert abs(int(mask.sum()) - 64) <= 8  # JPEG noise moves at most a few edge pixels


def test_grey_levels_threshold_strictly_above_127(tmp_path: Path) -> None:
    raw = np.array([[0, 100, 127, 128, 200, 255]], np.uint8)
    mask = read_mask(write_rgb(tmp_path / "grey.png", raw))
    np.testing.assert_array_equal(mask, [[0, 0, 0, 1, 1, 1]])


def test_lossless_zero_one_mask_is_kept(tmp_path: Path) -> None:
    raw = np.array([[0, 1], [1, 0]], np.uint8)
    mask = read_mask(write_rgb(tmp_path / "01.png", raw))
    np.testing.assert_array_equal(mask, raw)


@pytest.mark.parametrize("channel", [0, 1, 2])
def test_colour_masks_reduce_over_channels(tmp_path: Path, channel: int) -> None:
    raw = np.zeros((6, 6, 3), np.uint8)
    raw[2:4, 2:4, channel] = 255
    mask = read_mask(write_rgb(tmp_path / f"c{channel}.png", raw))
    assert mask.shape == (6, 6)
    assert mask.sum() == 4 and mask[2, 2] == 1


def test_rgba_mask_ignores_alpha(tmp_path: Path) -> None:
    raw = np.zeros((6, 6, 4), np.uint8)
    raw[..., 3] = 255  # opaque everywhere: must not become foreground
    raw[1, 1, :3] = 255
    mask = read_mask(write_rgb(tmp_path / "rgba_mask.png", raw))
    assert mask.sum() == 1


def test_read_pair_size_mismatch_names_both_files(tmp_path: Path) -> None:
    image = write_rgb(tmp_path / "img.png", np.zeros((10, 12, 3), np.uint8))
    mask = write_rgb(tmp_path / "msk.png", np.zeros((10, 11), np.uint8))
    with pytest.raises(DataError) as info:
        read_pair(Pair("x", image, mask))
    message = str(info.value)
    assert "img.png" in message and "msk.png" in message
    assert "12x10" in message and "11x10" in message


def test_read_pair_returns_matching_arrays(tmp_path: Path) -> None:
    rgb = np.full((7, 9, 3), 30, np.uint8)
    raw = np.zeros((7, 9), np.uint8)
    raw[3, 4] = 255
    pair = Pair("p", write_rgb(tmp_path / "i.png", rgb), write_rgb(tmp_path / "m.png", raw))
    image, mask = read_pair(pair)
    assert image.shape == (7, 9, 3) and mask.shape == (7, 9)
    assert mask.dtype == np.uint8 and mask.sum() == 1 and mask[3, 4] == 1


def test_float_tiff_in_unit_range_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    rgb = np.stack([ramp, 1.0 - ramp, np.full_like(ramp, 0.5)], axis=-1)
    path = write_rgb(tmp_path / "float.tiff", rgb)
    image = read_image(path)
    assert image.dtype == np.uint8
    np.testing.assert_allclose(image.astype(float), np.round(rgb * 255.0), atol=1.0)
    assert image[..., 0].max() == 255 and image[..., 1].max() == 255


@pytest.mark.parametrize("values", [(0.0, 255.0), (-1.0, 1.0), (0.0, float("nan"))])
def test_float_pixels_of_unknown_range_are_refused(tmp_path: Path, values) -> None:
    array = np.array([values, values], np.float32)
    path = write_rgb(tmp_path / "float.tif", array)
    with pytest.raises(DataError, match=r"float\.tif: floating-point pixels in .*\[0, 1\]"):
        read_image(path)


def test_other_pixel_types_are_refused_by_name(tmp_path: Path) -> None:
    path = write_rgb(tmp_path / "signed.tif", np.zeros((4, 4), np.int16))
    with pytest.raises(DataError, match=r"signed\.tif: unsupported pixel type int16"):
        read_image(path)


def test_sixteen_bit_gray_image_keeps_its_contrast(tmp_path: Path) -> None:
    """The issue's case: a 16-bit gray PNG must not clip (93% white) but scale by 1/257."""
    deep = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    image = read_image(write_rgb(tmp_path / "gray16.png", deep))
    expected = np.round(deep / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(image[..., 0], expected)
    assert (image == 255).mean() < 0.01


@pytest.mark.parametrize("foreground", [1, 65535])
def test_sixteen_bit_masks_keep_their_foreground(tmp_path: Path, foreground: int) -> None:
    raw = np.zeros((6, 6), np.uint16)
    raw[2:4, 1:5] = foreground
    mask = read_mask(write_rgb(tmp_path / "m16.png", raw))
    assert mask.sum() == 8 and mask[2, 1] == 1


def test_special_files_are_named_not_read(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "pipe.png")  # reading it would block forever
    with pytest.raises(DataError, match=r"pipe\.png: a FIFO"):
        read_image(tmp_path / "pipe.png")
    (tmp_path / "zero.png").symlink_to("/dev/zero")  # reading it would never end
    with pytest.raises(DataError, match=r"zero\.png: a character device"):
        read_mask(tmp_path / "zero.png")
