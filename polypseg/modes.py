"""A model's train/eval mode for one block, then the caller's modes back.

Every function that runs a model it was handed (inference, the speed bench, export, saving a
checkpoint) changes its mode only inside :func:`eval_mode` or :func:`train_mode`, so the caller
gets its model back in the mode it was in, also when the block raises. Each module's own mode
is put back (a caller may hold some submodules in eval mode, e.g. frozen batch norms). A model
already wholly in the mode asked for is not touched: ``train(False)`` on a zoo model drops the
cached expanded filters of its group convolutions, which repeated predictions reuse.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported by polypseg.checkpoint, which reports read without torch
    from torch import nn


@contextlib.contextmanager
def model_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """``model`` in train (``training=True``) or eval mode for the block, then every module of
    it back in its own mode before."""
    modes = [(module, module.training) for module in model.modules()]
    if any(was != training for _, was in modes):
        model.train(training)
    try:
        yield model
    finally:
        for module, was in modes:  # parents first: each child is put back after its parent
            if module.training != was:
                module.train(was)


def eval_mode(model: nn.Module) -> contextlib.AbstractContextManager[nn.Module]:
    """``model`` in eval mode for the block (:func:`model_mode`)."""
    return model_mode(model, False)


def train_mode(model: nn.Module) -> contextlib.AbstractContextManager[nn.Module]:
    """``model`` in train mode for the block (:func:`model_mode`). State dicts are taken and
    loaded in train mode: in eval mode e2cnn adds its expanded ``filter`` buffers. (MONAI's
    ``train_mode`` does the same, but loading monai takes seconds, and checkpoints are read
    where it is not loaded: ``predict``, ``serve``.)"""
    return model_mode(model, True)
