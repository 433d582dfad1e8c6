"""Pooling over the group axis, and the spatial resampling ops that commute with rot90.

* :class:`RotationPool`: max (or mean) over the ``|G|`` channels of each regular field,
  ``(B, C*|G|, H, W) -> (B, C, H, W)``. A group element permutes those channels and moves the
  image, so the result is an *invariant* (scalar) map: ``pool(g . x) = g(pool(x))``.
* :func:`upsample2x`: bilinear (``align_corners=False``) or nearest x2. Both are symmetric under
  reversing either image axis and under transposition, hence commute with every rot90/mirror;
  they act per channel, so fields stay whole. (A free-weight ``ConvTranspose2d`` would not.)
* spatial 2x2/stride-2 max pooling is ``nn.MaxPool2d(2)``: it commutes with rot90 when H and W
  are even, which the U-Net guarantees by requiring sides divisible by ``2**depth``.

Bilinear x2 upsampling is :class:`BilinearUpsample2x`, an ``nn.Upsample`` whose backward on
channels-last maps is the adjoint written as one depthwise stride-2 ``conv2d`` (oneDNN) instead
of torch's scalar ``upsample_bilinear2d_backward``; NCHW maps keep torch's own backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.options import PoolMode, UpsampleMode, look_up_option


class RotationPool(nn.Module):
    """``(B, C*|G|, H, W) -> (B, C, H, W)``: max or mean over each field's group axis."""

    def __init__(self, group_size: int, mode: PoolMode | str = PoolMode.MAX) -> None:
        """
        Args:
            group_size: channels per field, ``|G|`` (the size of the group axis).
            mode: ``"max"`` or ``"mean"`` over each field's group axis.
        """
        super().__init__()
        allowed = (PoolMode.MAX, PoolMode.MEAN)
        self.group_size = group_size
        self.mode = look_up_option(mode, PoolMode, "rotation pooling", allowed).value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # no shape arithmetic in Python, so torch.fx traces this into plain torch ops for export;
        # contiguous(): on a channels-last map the reduction's backward over the 5-d view runs
        # several times slower than one copy to NCHW (a no-op for NCHW maps)
        n = self.group_size
        x = x.contiguous()
        fields = x.view(x.size(0), x.size(1) // n, n, x.size(2), x.size(3))
        return fields.amax(2) if self.mode == "max" else fields.mean(2)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, mode={self.mode!r}"


#: 1-d weights of bilinear x2 upsampling (align_corners=False): output 2i takes 3/4 of input i
#: and 1/4 of i-1, output 2i+1 3/4 of i and 1/4 of i+1 (indices clamped at the borders).
_BILINEAR_TAPS = (0.25, 0.75, 0.75, 0.25)


def bilinear_upsample2x_adjoint(grad: torch.Tensor) -> torch.Tensor:
    """The adjoint (backward) of bilinear x2 upsampling: ``(B, C, 2H, 2W) -> (B, C, H, W)``.

    Input pixel ``i`` receives the taps ``1/4, 3/4, 3/4, 1/4`` of outputs ``2i-1 .. 2i+2`` along
    each axis; outputs past the border belong to the clamped border pixel, which replicate
    padding by one reproduces. So the adjoint is one depthwise ``conv2d`` with the 4x4 outer
    product of the taps, stride 2, on the replicate-padded gradient.
    """
    channels = grad.shape[1]
    taps = torch.tensor(_BILINEAR_TAPS, dtype=grad.dtype, device=grad.device)
    kernel = (taps[:, None] * taps[None, :]).expand(channels, 1, 4, 4)
    padded = F.pad(grad, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(padded, kernel, stride=2, groups=channels)


class _BilinearUpsample2x(torch.autograd.Function):
    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return bilinear_upsample2x_adjoint(grad)


class BilinearUpsample2x(nn.Upsample):
    """``nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)``, ``(B, C, H, W) ->
    (B, C, 2H, 2W)``; on channels-last input that needs a gradient, the backward is
    :func:`bilinear_upsample2x_adjoint` (equal to torch's to float rounding, tested)."""

    def __init__(self) -> None:
        super().__init__(scale_factor=2, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            not isinstance(x, torch.fx.Proxy)  # export traces torch's own op
            and x.requires_grad
            and torch.is_grad_enabled()
            and x.dim() == 4
            and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last)
        ):
            return _BilinearUpsample2x.apply(x)
        return super().forward(x)


def upsample2x(mode: UpsampleMode | str = UpsampleMode.BILINEAR) -> nn.Upsample:
    """Equivariant x2 upsampling: ``(B, C, H, W) -> (B, C, 2H, 2W)``, ``"bilinear"``
    (``align_corners=False``) or ``"nearest"``."""
    if look_up_option(mode, UpsampleMode, "equivariant upsampling") is UpsampleMode.BILINEAR:
        return BilinearUpsample2x()
    return nn.Upsample(scale_factor=2, mode="nearest")
