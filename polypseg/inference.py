"""Batched prediction: normalised images in, foreground probabilities out.

``images`` are what the data transforms produce: float tensors ``(B, 3, H, W)`` already
normalised with the model's mean/std (checkpoint metadata ``input``), ``H`` and ``W`` divisible
by ``2**depth``. The model maps them to logits ``(B, 1, H, W)``; this module applies the
sigmoid. Prediction runs in eval mode under ``torch.inference_mode`` on the model's device, in
chunks of ``batch_size`` images, and returns CPU tensors; the caller's model comes back in the
mode it was in (:func:`polypseg.modes.eval_mode`).

Test-time augmentation ``tta="rot90"`` (:class:`polypseg.options.Tta`) averages the
probabilities of the four rotations by multiples of 90 degrees (each rotated back with the exact
``torch.rot90``): the result is exactly invariant to rot90 of the input (up to float rounding),
at four times the cost.

Memory format: ``channels_last=None`` (the default) resolves as in training
(:func:`channels_last_default`, which the training loop uses too: channels-last on CPU, NCHW
elsewhere). Channels-last images run the same model through other oneDNN kernels (zoo keeps the
layout through its batch norms, pooling and upsampling), 1.3-1.8x faster per image on CPU; the
logits agree with the NCHW path to float rounding (a few 1e-6), so a mask can differ only
where a probability sits within rounding of the threshold.
"""

from __future__ import annotations

import torch
from torch import nn

from polypseg.modes import eval_mode
from polypseg.options import Tta, look_up_tta


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without any)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def channels_last_default(device: torch.device) -> bool:
    """Whether images go channels-last when the caller leaves it open: on CPU only (measured
    faster there, for training and inference alike; not measured on CUDA). Training uses this
    too (:mod:`polypseg.training.performance`)."""
    return device.type == "cpu"


def memory_format(channels_last: bool) -> torch.memory_format:
    """The memory format of input batches."""
    return torch.channels_last if channels_last else torch.contiguous_format


def resolve_channels_last(channels_last: bool | None, device: torch.device) -> bool:
    """``channels_last`` itself, or for ``None`` :func:`channels_last_default` on ``device``."""
    return channels_last_default(device) if channels_last is None else bool(channels_last)


def forward_logits(
    model: nn.Module, images: torch.Tensor, channels_last: bool | None = None
) -> torch.Tensor:
    """The model's logits ``(B, 1, H, W)`` (NCHW-contiguous, on the model's device) for
    ``images`` ``(B, 3, H, W)``, fed channels-last or NCHW (:func:`resolve_channels_last`).
    No mode or grad handling: the caller sets eval mode and ``inference_mode``/``no_grad``.
    """
    device = model_device(model)
    layout = memory_format(resolve_channels_last(channels_last, device))
    return model(images.to(device, memory_format=layout)).contiguous()


def _forward_probs(
    model: nn.Module, images: torch.Tensor, channels_last: bool | None
) -> torch.Tensor:
    return torch.sigmoid(forward_logits(model, images, channels_last).float()).cpu()


def predict_probs(
    model: nn.Module,
    images: torch.Tensor,
    tta: Tta | str | None = None,
    batch_size: int | None = None,
    channels_last: bool | None = None,
) -> torch.Tensor:
    """Foreground probabilities ``(B, 1, H, W)`` in [0, 1] for normalised ``images``.

    ``tta=None`` (or ``"none"``) runs the model once; ``tta="rot90"`` averages the four rot90
    predictions (:func:`polypseg.options.look_up_tta`: a ``ValueError`` for anything else).
    ``batch_size`` bounds how many images go through the model at once (all by default; with
    ``rot90`` each chunk becomes four forward passes). ``channels_last``: the images' memory
    format in the model (``None``: :func:`resolve_channels_last`). The model runs in eval mode
    and comes back in the mode it was in.

    Args:
        model: ``(B, 3, H, W)`` normalised images -> ``(B, 1, H, W)`` logits.
        images: ``(B, 3, H, W)`` normalised float images, on the model's device.
        tta: ``None``/``none`` or ``rot90``.
        batch_size: images per forward pass; ``None``: all at once.
        channels_last: the images' memory format in the model; ``None``:
            :func:`resolve_channels_last`.
    """
    tta = look_up_tta(tta)
    if images.dim() != 4:
        raise ValueError(f"expected images (B, 3, H, W), got shape {tuple(images.shape)}")
    channels_last = resolve_channels_last(channels_last, model_device(model))
    step = batch_size or max(1, images.shape[0])
    chunks = []
    with eval_mode(model), torch.inference_mode():
        for start in range(0, images.shape[0], step):
            batch = images[start : start + step]
            if tta is None:
                chunks.append(_forward_probs(model, batch, channels_last))
                continue
            total = torch.zeros(batch.shape[0], 1, *batch.shape[-2:])
            for k in range(4):
                rotated = torch.rot90(batch, k, dims=(-2, -1))
                probs = _forward_probs(model, rotated, channels_last)
                total += torch.rot90(probs, -k, dims=(-2, -1))
            chunks.append(total / 4.0)
    if not chunks:
        return torch.zeros(0, 1, *images.shape[-2:])
    return torch.cat(chunks)


def predict_masks(
    model: nn.Module,
    images: torch.Tensor,
    threshold: float = 0.5,
    tta: Tta | str | None = None,
    batch_size: int | None = None,
    channels_last: bool | None = None,
) -> torch.Tensor:
    """Binary masks ``(B, 1, H, W)`` in {0, 1}: :func:`predict_probs` ``>= threshold``.

    Args:
        model, images, tta, batch_size, channels_last: as :func:`predict_probs` takes them.
        threshold: the probability at and above which a pixel is foreground.
    """
    from polypseg.metrics import binarize

    probs = predict_probs(
        model, images, tta=tta, batch_size=batch_size, channels_last=channels_last
    )
    return binarize(probs, threshold)
