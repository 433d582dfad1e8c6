"""Preview grids: layout of tiles, mask outlines drawn where the mask edge is, atomic PNG."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from data_helpers import DatasetWriter

from polypseg.data.layouts import discover
from polypseg.data.preview import OUTLINE_RGB, make_grid, pick, render_tile, save_png
from polypseg.errors import DataError


def test_pick_is_even_or_seeded() -> None:
    items = list(range(10))
    assert pick(items, 4) == [0, 3, 6, 9]
    assert pick(items, 4, seed=1) == pick(items, 4, seed=1) != pick(items, 4, seed=2)
    assert pick(items, 40) == items
    with pytest.raises(DataError):
        pick(items, 0)


def test_outline_follows_the_mask(make_dataset: DatasetWriter) -> None:
    pair = discover(make_dataset("kv", ["a"], sizes=[(64, 64)], suffix=".png")).pairs[0]
    tile = render_tile(pair, tile=64)
    green = np.all(tile == OUTLINE_RGB, axis=2)
    mask = cv2.imread(str(pair.mask), cv2.IMREAD_GRAYSCALE) > 127
    edge = mask ^ cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert green[edge].mean() > 0.6  # the outline lies on the mask edge
    far = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    assert green[far].sum() == 0  # and nowhere far from it


def test_grid_shape_and_atomic_png(make_dataset: DatasetWriter, tmp_path: Path) -> None:
    pairs = discover(make_dataset("kv", list("abcde"), sizes=[(30, 60)] * 5)).pairs
    grid = make_grid(pairs, tile=32)
    assert grid.shape == (2 * 34 - 2, 3 * 34 - 2, 3)  # 3 columns, 2 rows, 2-pixel gaps
    out = save_png(tmp_path / "out" / "grid.png", grid)
    assert [p.name for p in out.parent.iterdir()] == ["grid.png"]
    back = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, grid)
    with pytest.raises(DataError, match="PNG"):
        save_png(tmp_path / "grid.jpg", grid)
