"""Rotation of tensors by arbitrary angles and the inscribed-disc mask."""

from __future__ import annotations

import math

import pytest
import torch

from polypseg.geometry import (
    disc_mask,
    parse_angles,
    quarter_turns,
    rotate,
    rotate_each,
    rotate_many,
)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_resampling_path_at_quarter_turns_equals_rot90(k: int, mode: str) -> None:
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(k))
    resampled = rotate_each(x, [90.0 * k] * 2, mode=mode, exact=False)
    torch.testing.assert_close(resampled, torch.rot90(x, k, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_multiples_of_90_are_exact_permutations() -> None:
    x = torch.rand(1, 2, 8, 8)
    for angle, k in ((0, 0), (90, 1), (180, 2), (270, 3), (-90, 3), (450, 1), (360, 0)):
        assert torch.equal(rotate(x, angle), torch.rot90(x, k, dims=(-2, -1)))
    assert quarter_turns(45.0) is None
    assert quarter_turns(90.0 + 1e-12) == 1


def test_positive_angle_is_counter_clockwise() -> None:
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 3] = 1.0  # top-right corner
    assert rotate(x, 90)[0, 0, 0, 0] == 1.0  # counter-clockwise: to the top-left


def test_disc_mask_shape_area_and_symmetry() -> None:
    size = 64
    disc = disc_mask(size)
    assert disc.shape == (size, size) and disc.dtype == torch.bool
    radius = size / 2 - 0.5
    assert abs(int(disc.sum()) - math.pi * radius**2) < 2 * math.pi * radius  # within a ring
    assert torch.equal(disc, torch.rot90(disc, 1)) and torch.equal(disc, disc.flip(0))
    assert not disc[0, 0] and disc[size // 2, size // 2]


@pytest.mark.parametrize("angle", [15.0, 45.0, 133.0])
def test_disc_never_sees_the_fill(angle: float) -> None:
    ones = torch.ones(1, 1, 32, 32)
    rotated = rotate(ones, angle)
    disc = disc_mask(32)
    torch.testing.assert_close(rotated[0, 0][disc], torch.ones(int(disc.sum())))
    assert rotated[0, 0][~disc].min() < 1.0  # the corners are filled with zeros


def test_rotate_many_and_nearest_keep_binary_masks() -> None:
    mask = (torch.rand(1, 32, 32) > 0.5).float()
    batch = rotate_many(mask, [0.0, 30.0, 90.0], mode="nearest")
    assert batch.shape == (3, 1, 32, 32)
    assert set(batch.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(batch[0], mask)


def test_bad_inputs_are_value_errors() -> None:
    with pytest.raises(ValueError, match="square"):
        rotate(torch.zeros(1, 1, 4, 6), 30)
    with pytest.raises(ValueError, match="mode"):
        rotate(torch.zeros(1, 1, 4, 4), 30, mode="bicubic")


def test_parse_angles() -> None:
    assert parse_angles("0:360:90") == [0.0, 90.0, 180.0, 270.0]
    assert len(parse_angles("0:360:5")) == 72
    assert parse_angles("0, 45,90") == [0.0, 45.0, 90.0]
    for bad in ("", "0:360", "a:b:c", "0:360:0", "x,y"):
        with pytest.raises(ValueError):
            parse_angles(bad)
