"""Negatives: crops clear of the mask, seeded, and mixed after the positives of an epoch."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from polypseg.data import build_transforms, discover
from polypseg.data.dataset import SegmentationDataset
from polypseg.data.io import read_pair
from polypseg.data.negatives import (
    MARGIN,
    NegativeMix,
    NegativeSource,
    find_crop,
    fixed_negatives,
    list_frames,
    negative_count,
)
from polypseg.errors import DataError
from polypseg.training.synthetic import make_synthetic, synthetic_pair


@pytest.fixture(scope="module")
def polyps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("neg") / "polyps", n=6, size=64)


def _random_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(3, width // 3)), int(rng.integers(3, height // 3)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    return mask


def test_crops_never_meet_the_mask_nor_its_margin() -> None:
    rng = np.random.default_rng(0)
    found = 0
    for trial in range(200):
        height, width = int(rng.integers(40, 160)), int(rng.integers(40, 160))
        mask = _random_mask(rng, height, width)
        image = rng.integers(40, 255, (height, width, 3), dtype=np.uint8)
        box = find_crop(image, mask, np.random.default_rng(trial))
        if box is None:
            continue
        found += 1
        pad = round(MARGIN * min(height, width))
        assert box.top >= 0 and box.left >= 0
        assert box.top + box.side <= height and box.left + box.side <= width
        around = mask[max(0, box.top - pad) : box.top + box.side + pad,
                      max(0, box.left - pad) : box.left + box.side + pad]
        assert not around.any(), (trial, box)
    assert found > 150  # most masks leave room: the test tests something


def test_no_crop_when_the_mask_covers_the_image_or_the_frame_is_black() -> None:
    image = np.full((50, 60, 3), 120, np.uint8)
    assert find_crop(image, np.ones((50, 60), np.uint8), np.random.default_rng(0)) is None
    black = np.zeros((50, 60, 3), np.uint8)
    assert find_crop(black, np.zeros((50, 60), np.uint8), np.random.default_rng(0)) is None
    assert find_crop(image, np.zeros((50, 60), np.uint8), np.random.default_rng(0)) is not None


def test_fixed_negatives_depend_on_the_image_not_the_set(polyps: Path) -> None:
    pairs = discover(polyps).pairs
    all_of_them, _ = fixed_negatives(pairs)
    again, _ = fixed_negatives(pairs)
    some, _ = fixed_negatives(pairs[2:5])
    boxes = {n.stem: n.box for n in all_of_them}
    assert [n.box for n in again] == [n.box for n in all_of_them]
    assert all(boxes[n.stem] == n.box for n in some)
    for negative in all_of_them:
        _, mask = read_pair(negative.pair)
        b = negative.box
        assert not mask[b.top : b.top + b.side, b.left : b.left + b.side].any()
    other, _ = fixed_negatives(pairs, seed=1)
    assert [n.box for n in other] != [n.box for n in all_of_them]


def test_negative_count() -> None:
    assert negative_count(80, 0.0) == 0
    assert negative_count(80, 0.2) == 20  # 20 of 100 items
    assert negative_count(10, 0.5) == 10
    with pytest.raises(DataError):
        negative_count(10, 1.0)


def _mix(polyps: Path, seed: int = 0, frames: list[Path] | None = None) -> NegativeMix:
    pairs = discover(polyps).pairs
    positives = SegmentationDataset(pairs, build_transforms(32, train=True, seed=0))
    return NegativeMix(positives, NegativeSource(pairs, frames or []), 4, seed)


def test_mix_appends_seeded_negatives_with_empty_targets(polyps: Path) -> None:
    mix = _mix(polyps)
    assert len(mix) == 6 + 4
    first = [mix[i] for i in range(6, 10)]
    for item in first:
        assert item["stem"].startswith("neg:")
        assert tuple(item["image"].shape) == (3, 32, 32)
        assert tuple(item["mask"].shape) == (1, 32, 32) and not item["mask"].any()
    positive = mix[0]
    assert positive["stem"] == discover(polyps).pairs[0].stem and positive["mask"].any()
    # the crop is a function of (seed, epoch, index): the same again, another next epoch
    mix.transform.set_random_seed(0)
    a = mix[7]["image"]
    mix.transform.set_random_seed(0)
    assert np.allclose(a, mix[7]["image"], atol=1e-6)
    mix.set_epoch(1)
    mix.transform.set_random_seed(0)
    assert not np.allclose(a, mix[7]["image"], atol=1e-3)
    with pytest.raises(IndexError):
        mix[10]


def test_frames_of_a_folder_join_the_negatives(polyps: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    image, _ = synthetic_pair(np.random.default_rng(5), 48)
    cv2.imwrite(str(folder / "clear.png"), image[..., ::-1])
    (folder / "notes.txt").write_text("not an image")
    frames = list_frames(folder)
    assert [f.name for f in frames] == ["clear.png"]
    source = NegativeSource([], frames)  # frames alone: every draw is that frame
    drawn, name = source.draw(np.random.default_rng(0))
    assert name == "neg:clear" and drawn.shape == (48, 48, 3)
    with pytest.raises(DataError, match="holds no images"):
        list_frames(tmp_path)
    with pytest.raises(DataError, match="not found"):
        list_frames(tmp_path / "missing")
