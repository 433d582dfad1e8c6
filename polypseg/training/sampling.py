"""Data order and augmentation as pure functions of ``(seed, epoch, position)``.

Bitwise-reproducible resume (also mid-epoch, also with DataLoader workers) needs the order of
the images and the random augmentation of each one to not depend on any global random state.

* :class:`ResumableSampler` is a ``DistributedSampler`` (shuffled by ``seed + epoch``,
  sharded across ranks, padded to equal length; one rank and no process group in a
  single-process run) that can start ``skip`` samples into its shard.
* :class:`SeededAugmentation` wraps a dataset and reseeds its albumentations pipeline before
  every item from ``(seed, epoch, index)``.
* :class:`RepeatedDataset` lists every item of a dataset ``repeats`` times, so one epoch of a
  small training set takes the optimiser steps of a larger one (``TrainConfig.epoch_repeats``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` whose iteration can begin ``skip`` samples into the epoch.

    Args:
        dataset: the dataset sampled.
        num_replicas: processes sharing the epoch (the world size).
        rank: this process's rank.
        seed: seed of the per-epoch shuffle (with ``set_epoch``).
        shuffle: shuffle each epoch (else in order).
    """

    def __init__(
        self, dataset: Dataset, num_replicas: int, rank: int, seed: int, shuffle: bool = True
    ) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
            drop_last=False,
        )
        self.skip = 0

    def set_skip(self, skip: int) -> None:
        """Leave out the first ``skip`` samples of this rank's shard in the next iteration."""
        self.skip = max(0, int(skip))

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.skip :])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed of one item's augmentation, well mixed from its three inputs."""
    generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_033 + index)
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


class SeededAugmentation(Dataset):
    """A dataset whose ``transform`` (albumentations ``Compose``) is reseeded per item.

    ``set_epoch`` must be called before each epoch (before the DataLoader iterator is made,
    so worker processes copy the right epoch). Without a ``set_random_seed`` method on the
    transform, the global ``random``/``numpy``/``torch`` generators are seeded instead.
    """

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset = dataset
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentations :meth:`__getitem__` draws (and the wrapped
        dataset's items, when it has a ``set_epoch``: :class:`polypseg.data.negatives.
        NegativeMix`)."""
        self.epoch = int(epoch)
        setter = getattr(self.dataset, "set_epoch", None)
        if callable(setter):
            setter(self.epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        seed = item_seed(self.seed, self.epoch, index)
        transform = getattr(self.dataset, "transform", None)
        if transform is not None and hasattr(transform, "set_random_seed"):
            transform.set_random_seed(seed)
        else:
            import random

            import numpy as np

            random.seed(seed)
            np.random.seed(seed)
        return self.dataset[index]


class RepeatedDataset(Dataset):
    """Every item of ``dataset`` listed ``repeats`` times: item ``i`` is ``dataset[i % n]``.

    Shuffled by :class:`ResumableSampler`, an epoch draws each image ``repeats`` times in one
    random order over the copies, and :class:`SeededAugmentation` (seeded by the index in
    this longer list) augments each copy differently. ``transform`` is the wrapped dataset's,
    so the augmentation can be reseeded through this view.

    Args:
        dataset: a map-style dataset of ``n >= 1`` items.
        repeats: how many times each item is listed (``>= 1``).
    """

    def __init__(self, dataset: Any, repeats: int) -> None:
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        self.dataset = dataset
        self.repeats = int(repeats)

    @property
    def transform(self) -> Any:
        """The wrapped dataset's transform (``None`` when it has none)."""
        return getattr(self.dataset, "transform", None)

    def __len__(self) -> int:
        return len(self.dataset) * self.repeats

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        return self.dataset[index % len(self.dataset)]
