"""Pooling over the group axis, and the spatial resampling ops that commute with rot90.

* :class:`RotationPool`: max (or mean) over the ``|G|`` channels of each regular field,
  ``(B, C*|G|, H, W) -> (B, C, H, W)``. A group element permutes those channels and moves the
  image, so the result is an *invariant* (scalar) map: ``pool(g . x) = g(pool(x))``.
* :func:`upsample2x`: bilinear (``align_corners=False``) or nearest x2. Both are symmetric under
  reversing either image axis and under transposition, hence commute with every rot90/mirror;
  they act per channel, so fields stay whole. (A free-weight ``ConvTranspose2d`` would not.)
* spatial 2x2/stride-2 max pooling is ``nn.MaxPool2d(2)``: it commutes with rot90 when H and W
  are even, which the U-Net guarantees by requiring sides divisible by ``2**depth``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

PoolMode = Literal["max", "mean"]
UpsampleMode = Literal["bilinear", "nearest"]


class RotationPool(nn.Module):
    """``(B, C*|G|, H, W) -> (B, C, H, W)``: max or mean over each field's group axis."""

    def __init__(self, group_size: int, mode: PoolMode = "max") -> None:
        super().__init__()
        if mode not in ("max", "mean"):
            raise ValueError(f"rotation pooling is 'max' or 'mean', got {mode!r}")
        self.group_size = group_size
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # no shape arithmetic in Python, so torch.fx traces this into plain torch ops for export
        n = self.group_size
        fields = x.view(x.size(0), x.size(1) // n, n, x.size(2), x.size(3))
        return fields.amax(2) if self.mode == "max" else fields.mean(2)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, mode={self.mode!r}"


def upsample2x(mode: UpsampleMode = "bilinear") -> nn.Upsample:
    """Equivariant x2 upsampling: ``(B, C, H, W) -> (B, C, 2H, 2W)``."""
    if mode == "bilinear":
        return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
    if mode == "nearest":
        return nn.Upsample(scale_factor=2, mode="nearest")
    raise ValueError(f"equivariant upsampling is 'bilinear' or 'nearest', got {mode!r}")
