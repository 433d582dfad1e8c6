"""Polyp datasets: layouts, reading, splits, transforms, torch datasets and loaders.

The public names below are imported lazily (PEP 562), so ``from polypseg.data import discover``
does not load torch or albumentations; only the names that need them do.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names resolve to, for type checkers and IDEs
    from polypseg.data.dataset import SegmentationDataset, make_loader, seed_worker
    from polypseg.data.io import read_image, read_mask, read_pair
    from polypseg.data.layouts import DATASETS, DatasetIndex, Pair, canonical_dataset, discover
    from polypseg.data.splits import (
        SUBSETS,
        Split,
        default_split_path,
        fold_path,
        load_split,
        make_combined_split,
        make_kfold,
        make_kfolds,
        make_split,
        nested_train_subset,
        resolve,
        select,
        subsample_split,
    )
    from polypseg.data.transforms import NORMALIZE_MEAN, NORMALIZE_STD, build_transforms, check_size

__all__ = [
    "DATASETS",
    "NORMALIZE_MEAN",
    "NORMALIZE_STD",
    "SUBSETS",
    "DatasetIndex",
    "Pair",
    "SegmentationDataset",
    "Split",
    "build_transforms",
    "canonical_dataset",
    "check_size",
    "default_split_path",
    "discover",
    "fold_path",
    "load_split",
    "make_combined_split",
    "make_kfold",
    "make_kfolds",
    "make_loader",
    "make_split",
    "nested_train_subset",
    "read_image",
    "read_mask",
    "read_pair",
    "resolve",
    "seed_worker",
    "select",
    "subsample_split",
]

# Searched in this order, lightest first: a name from `layouts` never loads torch.
_MODULES = ("layouts", "io", "splits", "transforms", "dataset")


def __getattr__(name: str) -> Any:
    if name in __all__:
        for module in _MODULES:
            loaded = importlib.import_module(f"polypseg.data.{module}")
            if hasattr(loaded, name):
                value = getattr(loaded, name)
                globals()[name] = value
                return value
    raise AttributeError(f"module 'polypseg.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
