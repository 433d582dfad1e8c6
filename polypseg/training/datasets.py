"""Data for training, evaluation and sweeps: the split of a run, its subsets, their loaders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from polypseg.errors import DataError


@dataclass
class SplitChoice:
    """A split and where it came from (for messages and the run folder copy)."""

    split: Any  # polypseg.data.Split
    source: str
    sha256: str


def choose_split(
    index: Any,
    split_file: str | Path | None,
    run_dir: Path | None = None,
    split_seed: int = 0,
) -> SplitChoice:
    """The split to use: ``split_file`` if given, else ``RUN/split.json`` if the run has one,
    else the dataset's default split for ``split_seed`` (:func:`polypseg.data.make_split`).

    Args:
        index: the dataset's image/mask pairs.
        split_file: a split file; ``None``: the run's or the default split.
        run_dir: the run folder whose ``split.json`` is used; ``None``: none.
        split_seed: seed of the default split.
    """
    from polypseg.data import load_split, make_split

    if split_file is not None:
        split = load_split(split_file)
        source = str(split_file)
    elif run_dir is not None and (run_dir / "split.json").is_file():
        split = load_split(run_dir / "split.json")
        source = str(run_dir / "split.json")
    else:
        split = make_split(index, seed=split_seed)
        source = f"default split of {index.name} (seed {split_seed})"
    return SplitChoice(split=split, source=source, sha256=split.sha256())


def subset_pairs(index: Any, split: Any, subset: str, limit: int | None = None) -> list[Any]:
    """The pairs of one set of the split (the first ``limit`` of them); never empty.

    Args:
        index: the dataset's image/mask pairs.
        split: the split.
        subset: ``train``, ``val`` or ``test``.
        limit: keep the first ``limit`` pairs; ``None``: all.
    """
    from polypseg.data import select

    try:
        pairs = select(index, split, subset)
    except DataError as err:
        raise DataError(f"{err} (subset {subset!r}; check --split / --split-file)") from None
    if limit is not None:
        pairs = pairs[:limit]
    if not pairs:
        raise DataError(f"the {subset} set of the split is empty")
    return pairs


def eval_dataset(pairs: list[Any], size: int, depth: int | None = None) -> Dataset:
    """Resized, normalised, un-augmented image/mask items for prediction."""
    from polypseg.data import SegmentationDataset, build_transforms

    return SegmentationDataset(pairs, build_transforms(size, train=False, depth=depth))


def stack_dataset(
    dataset: Dataset, batch_size: int = 16
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """All items of ``dataset`` as ``(images, masks, stems)`` tensors (small sets only)."""
    images, masks, stems = [], [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        images.append(batch["image"])
        masks.append(batch["mask"])
        stems.extend(batch["stem"])
    return torch.cat(images), torch.cat(masks), stems


def shard(dataset: Dataset, rank: int, world_size: int) -> tuple[Dataset, list[int]]:
    """Items ``rank, rank + world_size, ...`` of ``dataset`` (no padding, no duplicates) and
    their indices in the whole set, so that per-item results gather back exactly."""
    indices = list(range(rank, len(dataset), world_size))  # type: ignore[arg-type]
    return Subset(dataset, indices), indices

