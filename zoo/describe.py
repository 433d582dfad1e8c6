"""Model size and cost: parameters and multiply-accumulates (MACs) of one forward pass.

MACs are counted from the shapes of the convolutions actually run, through forward hooks on
every ``nn.Conv2d`` and :class:`~zoo.base.ExpandedConv2d`: a conv with output ``(C_out, H, W)``
costs ``C_out * H * W * C_in/groups * k_h * k_w`` per image. Batch norm, activations, pooling,
upsampling and the filter expansion (a gather, once per step) are not counted.

The forward that the hooks watch does no arithmetic: it runs an *empty batch*
``(0, C_in, H, W)`` through a shadow copy of the model in which every expanded conv is a
weightless stand-in of the same shape. Describing a large model at 256x256 therefore costs
neither the convolutions nor the filter expansion (building the expanded bank of a default
SE(2,12) U-Net alone takes seconds and about a gigabyte).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from zoo.base import ExpandedConv2d


class _ShapeConv(nn.Module):
    """Weightless stand-in of an expanded conv: ``(B, C_in, H, W) -> zeros (B, C_out, H, W)``."""

    def __init__(self, conv: ExpandedConv2d) -> None:
        super().__init__()
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size = conv.kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], self.out_channels, x.shape[2], x.shape[3])


def conv_macs(module: nn.Module, output: torch.Tensor) -> int:
    """MACs of one conv for one image, from its output ``(B, C_out, H, W)``."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        per_output = module.in_channels // module.groups * kh * kw
    else:  # ExpandedConv2d or its stand-in: in_channels and kernel_size are expanded ints
        per_output = module.in_channels * module.kernel_size**2
    return math.prod(output.shape[1:]) * per_output


def count_macs(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """``(MACs per image, number of convs run)`` for ``model(x)``, counted by hooks."""
    total = [0, 0]

    def hook(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        total[0] += conv_macs(module, output)
        total[1] += 1

    kinds = (nn.Conv2d, ExpandedConv2d, _ShapeConv)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return total[0], total[1]


def shape_shadow(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every expanded conv a weightless :class:`_ShapeConv`."""
    memo: dict[int, Any] = {
        id(m): _ShapeConv(m) for m in model.modules() if isinstance(m, ExpandedConv2d)
    }
    return copy.deepcopy(model, memo).eval()


def _input_channels(model: nn.Module) -> int:
    config = getattr(model, "config", None) or {}
    if "in_channels" in config:
        return int(config["in_channels"])
    if hasattr(model, "in_channels"):
        return int(model.in_channels)
    first = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, ExpandedConv2d)))
    return int(first.in_channels)


def describe(model: nn.Module, size: tuple[int, int] = (256, 256)) -> dict[str, Any]:
    """Size and cost of ``model`` for one ``(in_channels, *size)`` image.

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
    ref = next(iter(model.state_dict().values()), torch.empty(0))
    dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
    empty = torch.zeros(0, _input_channels(model), h, w, device=ref.device, dtype=dtype)
    info["macs"], info["convs"] = count_macs(shape_shadow(model), empty)
    return info
