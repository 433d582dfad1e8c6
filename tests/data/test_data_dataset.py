"""SegmentationDataset items and the seeded DataLoader."""

from __future__ import annotations

import pytest
import torch
from data_helpers import DatasetWriter

from polypseg.data.dataset import SegmentationDataset, make_loader
from polypseg.data.layouts import discover
from polypseg.data.transforms import build_transforms
from polypseg.errors import DataError

STEMS = [f"img{i:02d}" for i in range(8)]


@pytest.fixture
def pairs(make_dataset: DatasetWriter):
    return discover(make_dataset("kv", STEMS, sizes=[(30 + i, 44) for i in range(8)])).pairs


def test_item_contract(pairs) -> None:
    item = SegmentationDataset(pairs, build_transforms(size=32))[3]
    assert set(item) == {"image", "mask", "stem"}
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 32, 32)
    assert item["mask"].dtype == torch.float32 and item["mask"].shape == (1, 32, 32)
    assert set(item["mask"].unique().tolist()) == {0.0, 1.0}
    assert item["stem"] == "img03"
    assert float(item["image"].min()) > -3.0 and float(item["image"].max()) < 3.0


def test_default_transform_is_eval_at_256(pairs) -> None:
    assert SegmentationDataset(pairs)[0]["image"].shape == (3, 256, 256)


def test_empty_pairs_rejected() -> None:
    with pytest.raises(DataError, match="no image/mask pairs"):
        SegmentationDataset([])


def _stems(loader) -> list[str]:
    return [stem for batch in loader for stem in batch["stem"]]


def test_same_seed_same_order_other_seed_other_order(pairs) -> None:
    dataset = SegmentationDataset(pairs, build_transforms(size=32))
    first = _stems(make_loader(dataset, batch_size=3, shuffle=True, seed=1))
    again = _stems(make_loader(dataset, batch_size=3, shuffle=True, seed=1))
    other = _stems(make_loader(dataset, batch_size=3, shuffle=True, seed=2))
    assert first == again and sorted(first) == STEMS
    assert first != other
    assert _stems(make_loader(dataset, 3, shuffle=False, seed=1)) == STEMS


def test_drop_last_and_batch_shapes(pairs) -> None:
    dataset = SegmentationDataset(pairs, build_transforms(size=32))
    batches = list(make_loader(dataset, batch_size=3, shuffle=False, seed=0, drop_last=True))
    assert len(batches) == 2
    assert batches[0]["image"].shape == (3, 3, 32, 32)
    assert batches[0]["mask"].shape == (3, 1, 32, 32)


@pytest.mark.parametrize("workers", [0, 2])
def test_augmentations_repeat_with_the_seed(pairs, workers: int) -> None:
    def run(seed: int, shuffle: bool = True) -> torch.Tensor:
        dataset = SegmentationDataset(pairs, build_transforms(size=32, train=True, rot_aug=True))
        loader = make_loader(dataset, batch_size=4, shuffle=shuffle, seed=seed, num_workers=workers)
        return torch.stack([torch.cat([b["mask"] for b in loader]) for _ in range(2)])  # 2 epochs

    first = run(7)
    assert torch.equal(first, run(7))
    assert not torch.equal(first, run(8))
    in_order = run(7, shuffle=False)
    assert not torch.equal(in_order[0], in_order[1])  # fresh augmentations each epoch
    assert not torch.equal(in_order[0, :4], in_order[0, 4:])  # workers do not repeat each other


def test_bad_loader_arguments(pairs) -> None:
    dataset = SegmentationDataset(pairs)
    with pytest.raises(DataError, match="batch size"):
        make_loader(dataset, batch_size=0, shuffle=False, seed=0)
    with pytest.raises(DataError, match="num_workers"):
        make_loader(dataset, batch_size=1, shuffle=False, seed=0, num_workers=-1)
