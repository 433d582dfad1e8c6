"""Transforms: sizes, normalisation, binary masks that follow the image, rotation only on
request, divisibility errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from polypseg.data.transforms import NORMALIZE_MEAN, NORMALIZE_STD, build_transforms
from polypseg.errors import DataError


def _denormalize(image: np.ndarray) -> np.ndarray:
    return image * np.array(NORMALIZE_STD) * 255 + np.array(NORMALIZE_MEAN) * 255


def _block_image(seed: int, height: int = 96, width: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """An image whose red channel is 0/255 in random 16-pixel blocks; mask = red > 127."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 2, (height // 16, width // 16), dtype=np.uint8) * 255
    image = rng.integers(60, 196, (height, width, 3), dtype=np.uint8)
    image[..., 0] = cv2.resize(blocks, (width, height), interpolation=cv2.INTER_NEAREST)
    return image, (image[..., 0] > 127).astype(np.uint8)


def test_constants_are_imagenet() -> None:
    assert NORMALIZE_MEAN == (0.485, 0.456, 0.406)
    assert NORMALIZE_STD == (0.229, 0.224, 0.225)


def test_eval_pipeline_resizes_and_normalises() -> None:
    image = np.full((50, 70, 3), (255, 128, 0), np.uint8)
    mask = np.zeros((50, 70), np.uint8)
    mask[10:20, 10:30] = 1
    out = build_transforms(size=64)(image=image, mask=mask)
    assert out["image"].shape == (64, 64, 3) and out["image"].dtype == np.float32
    assert out["mask"].shape == (64, 64) and set(np.unique(out["mask"])) == {0, 1}
    expected = (np.array([255, 128, 0]) / 255 - NORMALIZE_MEAN) / NORMALIZE_STD
    np.testing.assert_allclose(out["image"][32, 32], expected, atol=1e-4)


def test_eval_pipeline_is_deterministic() -> None:
    image, mask = _block_image(0)
    transform = build_transforms(size=64)
    first, second = transform(image=image, mask=mask), transform(image=image, mask=mask)
    np.testing.assert_array_equal(first["image"], second["image"])
    np.testing.assert_array_equal(first["mask"], second["mask"])


def test_pad_keeps_aspect_ratio() -> None:
    image = np.full((32, 64, 3), 200, np.uint8)
    mask = np.ones((32, 64), np.uint8)
    out = build_transforms(size=64, pad=True, normalize=False)(image=image, mask=mask)
    assert out["image"].shape == (64, 64, 3)
    rows = out["mask"].any(axis=1)
    assert rows.sum() == 32 and not rows[:16].any() and not rows[48:].any()
    assert out["image"][:16].max() == 0 and out["image"][16:48].min() == 200
    stretched = build_transforms(size=64, normalize=False)(image=image, mask=mask)
    assert stretched["mask"].all()


@pytest.mark.parametrize(("size", "depth"), [(250, 4), (100, 3), (24, 4)])
def test_size_must_divide_by_two_to_the_depth(size: int, depth: int) -> None:
    with pytest.raises(DataError, match=f"{size} is not divisible by 2\\*\\*depth = {2**depth}"):
        build_transforms(size=size, depth=depth)


def test_valid_depth_and_invalid_sizes() -> None:
    assert build_transforms(size=256, depth=5) is not None
    for bad in (0, -8, 12.5):
        with pytest.raises(DataError, match="positive integer"):
            build_transforms(size=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("rot_aug", [False, True])
def test_train_masks_stay_binary_and_follow_the_image(rot_aug: bool) -> None:
    transform = build_transforms(size=64, train=True, rot_aug=rot_aug, seed=3)
    for seed in range(12):
        image, mask = _block_image(seed)
        out = transform(image=image, mask=mask)
        assert out["mask"].dtype == np.uint8 and set(np.unique(out["mask"])) <= {0, 1}
        red = _denormalize(out["image"])[..., 0]
        inside = out["mask"] == 1
        # colour jitter moves values, interpolation blurs edges; geometry must still match
        agreement = np.mean((red > 127) == inside)
        assert agreement > 0.9, (seed, agreement)


def _bar_angles(rot_aug: bool, draws: int = 24) -> list[float]:
    """Orientation (degrees, 0 = horizontal) of a thin horizontal bar after augmentation."""
    image = np.full((64, 64, 3), 128, np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[30:34, 12:52] = 1
    transform = build_transforms(size=64, train=True, rot_aug=rot_aug, seed=0)
    angles = []
    for _ in range(draws):
        out = transform(image=image, mask=mask)["mask"]
        ys, xs = np.nonzero(out)
        cov = np.cov(np.stack([xs, ys]).astype(float))
        vals, vecs = np.linalg.eigh(cov)
        major = vecs[:, np.argmax(vals)]
        angle = np.degrees(np.arctan2(major[1], major[0])) % 180
        angles.append(min(angle, 180 - angle))
    return angles


def test_rotation_only_with_rot_aug() -> None:
    assert max(_bar_angles(rot_aug=False)) < 1.0  # flips, scale, shift keep a bar horizontal
    rotated = _bar_angles(rot_aug=True)
    assert max(rotated) > 30.0 and sum(a > 5.0 for a in rotated) >= len(rotated) // 2


def test_rot_aug_without_train_has_no_effect() -> None:
    image, mask = _block_image(1)
    plain = build_transforms(size=64)(image=image, mask=mask)
    asked = build_transforms(size=64, rot_aug=True)(image=image, mask=mask)
    np.testing.assert_array_equal(plain["mask"], asked["mask"])


def test_seeded_train_pipelines_repeat_and_differ_by_seed() -> None:
    image, mask = _block_image(2)
    a = build_transforms(size=64, train=True, seed=5)(image=image, mask=mask)
    b = build_transforms(size=64, train=True, seed=5)(image=image, mask=mask)
    np.testing.assert_array_equal(a["image"], b["image"])
    outputs = [
        build_transforms(size=64, train=True, seed=s)(image=image, mask=mask)["image"]
        for s in range(6, 10)
    ]
    assert any(not np.array_equal(a["image"], o) for o in outputs)
