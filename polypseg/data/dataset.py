"""A torch Dataset of image/mask pairs and a DataLoader factory with reproducible order.

Reproducibility: the loader's shuffling comes from a ``torch.Generator`` seeded with ``seed``;
augmentation randomness (albumentations keeps its own random state, not numpy's) is reseeded
from ``seed`` in the main process and from torch's per-worker seed in each worker, along with
numpy and ``random``. The same seed and worker count give the same batches.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from polypseg.data.io import read_pair
from polypseg.data.layouts import Pair
from polypseg.errors import DataError

Transform = Callable[..., dict[str, Any]]


class SegmentationDataset(Dataset):
    """Items ``{'image': float32 (3, S, S), 'mask': float32 (1, S, S) in {0, 1}, 'stem': str}``.

    ``transform`` is an albumentations pipeline (``transform(image=..., mask=...)``) such as
    :func:`~polypseg.data.transforms.build_transforms`; when None, the evaluation pipeline at
    256 x 256 is used.
    """

    def __init__(self, pairs: Sequence[Pair], transform: Transform | None = None) -> None:
        if not pairs:
            raise DataError("SegmentationDataset: no image/mask pairs given")
        if transform is None:
            from polypseg.data.transforms import build_transforms

            transform = build_transforms()
        self.pairs = list(pairs)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        pair = self.pairs[i]
        image, mask = read_pair(pair)
        out = self.transform(image=image, mask=mask)
        return {
            "image": _as_tensor(out["image"], channels_last=True),
            "mask": _as_tensor(out["mask"], channels_last=False).clamp_(0, 1),
            "stem": pair.stem,
        }

    def reseed(self, seed: int) -> None:
        """Seed the transform's own random state, when it has one (albumentations Compose)."""
        setter = getattr(self.transform, "set_random_seed", None)
        if callable(setter):
            setter(seed)


def _as_tensor(array: Any, channels_last: bool) -> torch.Tensor:
    """``(H, W, C)`` image or ``(H, W)`` mask (numpy or tensor) -> float32 ``(C, H, W)``."""
    tensor = torch.as_tensor(np.asarray(array) if not torch.is_tensor(array) else array)
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    elif channels_last:
        tensor = tensor.permute(2, 0, 1)
    return tensor.to(torch.float32).contiguous()


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed numpy, ``random`` and the dataset's transform from the seed torch
    gave this worker (derived from the loader's generator, so reproducible)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = torch.utils.data.get_worker_info()
    if info is not None and isinstance(info.dataset, SegmentationDataset):
        info.dataset.reseed(seed)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader whose order and augmentations depend only on ``seed`` (and ``num_workers``).

    The dataset's transform is reseeded here, so create the loader once per run (not per epoch)
    to get fresh augmentations each epoch.

    Args:
        dataset: the dataset; a :class:`SegmentationDataset`'s transform is reseeded with ``seed``.
        batch_size: items per batch (at least 1).
        shuffle: draw a new seeded order each epoch.
        seed: seed of the order and of the augmentations.
        num_workers: loader worker processes (0: load in this process).
        drop_last: leave out the last, smaller batch.
        pin_memory: pin the batches' memory (for CUDA copies).
    """
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    if num_workers < 0:
        raise DataError(f"num_workers must be 0 or more, got {num_workers}")
    generator = torch.Generator()
    generator.manual_seed(seed)
    if isinstance(dataset, SegmentationDataset):
        dataset.reseed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        generator=generator,
        worker_init_fn=seed_worker if num_workers > 0 else None,
        persistent_workers=False,
    )
