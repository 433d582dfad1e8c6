"""Model size and cost: parameters and multiply-accumulates (MACs) of one forward pass.

MACs are counted from the shapes of the convolutions actually run, through forward hooks on
every ``nn.Conv2d`` and :class:`~zoo.base.ExpandedConv2d`: a conv with output ``(C_out, H, W)``
costs ``C_out * H * W * C_in/groups * k_h * k_w``. Batch norm, activations, pooling,
upsampling and the filter expansion (a gather, once per step) are not counted. The forward runs
on a copy of the model on the ``meta`` device (shapes only, no arithmetic), so describing a
large model at 256x256 is instant; if a module cannot run on ``meta`` it runs for real.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from zoo.base import ExpandedConv2d


def conv_macs(module: nn.Module, output: torch.Tensor) -> int:
    """MACs of one conv for one sample, from its output ``(B, C_out, H, W)``."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        per_output = module.in_channels // module.groups * kh * kw
    else:
        per_output = module.in_channels * module.kernel_size**2
    return output[0].numel() * per_output


def count_macs(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """``(MACs per sample, number of convs run)`` for ``model(x)``, counted by hooks."""
    total = [0, 0]

    def hook(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        total[0] += conv_macs(module, output)
        total[1] += 1

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, ExpandedConv2d))
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return total[0], total[1]


def _input_channels(model: nn.Module) -> int:
    config = getattr(model, "config", None) or {}
    if "in_channels" in config:
        return int(config["in_channels"])
    if hasattr(model, "in_channels"):
        return int(model.in_channels)
    first = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, ExpandedConv2d)))
    return int(first.in_channels)


def describe(model: nn.Module, size: tuple[int, int] = (256, 256)) -> dict[str, Any]:
    """Size and cost of ``model`` for one ``(in_channels, *size)`` input.

    Returns ``params`` (``sum(p.numel())``), ``trainable_params``, ``macs`` (per image, convs
    only), ``convs`` (how many ran), ``size``, and from the model when it has them:
    ``variant``, ``group``, ``group_size``, ``width``, ``depth``.
    """
    h, w = size
    info: dict[str, Any] = {}
    config = getattr(model, "config", None) or {}
    if "variant" in config:
        info["variant"] = config["variant"]
    group = getattr(model, "group", None)
    if group is not None:
        info["group"] = group.name
    for key in ("group_size", "width", "depth"):
        if hasattr(model, key):
            info[key] = getattr(model, key)
    info["params"] = sum(p.numel() for p in model.parameters())
    info["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    info["size"] = [h, w]

    channels = _input_channels(model)
    try:
        shadow = copy.deepcopy(model).to("meta").eval()
        macs, convs = count_macs(shadow, torch.empty(1, channels, h, w, device="meta"))
    except (NotImplementedError, RuntimeError, TypeError):
        ref = next(model.parameters())
        was_training = model.training
        model.eval()
        try:
            x = torch.zeros(1, channels, h, w, device=ref.device, dtype=ref.dtype)
            macs, convs = count_macs(model, x)
        finally:
            model.train(was_training)
    info["macs"] = macs
    info["convs"] = convs
    return info
