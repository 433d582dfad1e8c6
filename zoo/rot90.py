"""p4 and p4m group convolutions (Cohen & Welling 2016): kernels moved by exact pixel permutations.

For a group ``G`` whose rotations are multiples of 90 degrees (``C4`` = p4, ``D4`` = p4m; also
``C1``, ``C2``, ``D1``, ``D2``), moving a ``k x k`` kernel by ``g`` permutes its pixels, and the
group conv permutes the input group axis. Both layers build their dense expanded weight with ONE
``index_select`` from a precomputed index buffer, then :class:`~zoo.base.ExpandedConv2d` applies
one ``conv2d``: the cost is that of the dense conv of the same shape.

Group action (see :mod:`zoo.groups`): ``g`` moves an image by :func:`~zoo.groups.transform_image`
and a regular field by ``(g . x)[c, h] = g(x[c, g^{-1} h])``. With ``g(psi)`` the kernel ``psi``
moved like an image, and ``*`` cross-correlation with zero "same" padding:

* lifting ``out[o, g] = sum_c x[c] * g(psi[o, c])``;
* group conv ``out[o, g] = sum_{i, h} x[i, h] * g(psi[o, i, g^{-1} h])``.

Both satisfy ``layer(g . x) = g . layer(x)`` exactly (odd ``k``): for a quarter turn the image
rotates by ``torch.rot90(dims=(-2, -1))`` and the group axis rolls by ``|G|/4`` the same way.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from zoo.base import ExpandedConv2d, init_skipped
from zoo.family import ConvFamily
from zoo.groups import P4, P4M, Group


def _check_kernel(kernel_size: int) -> None:
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"exact equivariance needs an odd kernel size, got {kernel_size}")


class _Rot90Conv(ExpandedConv2d):
    """Shared part: one learned bank ``weight``, one index buffer, optional per-field bias."""

    index: torch.Tensor

    def __init__(
        self,
        group: Group,
        weight_shape: tuple[int, ...],
        index: torch.Tensor,
        in_channels: int,
        out_fields: int,
        kernel_size: int,
        bias: bool,
    ) -> None:
        super().__init__()
        _check_kernel(kernel_size)
        self.group = group
        self.kernel_size = kernel_size
        self.in_channels = in_channels
        self.out_fields = out_fields
        self.out_channels = out_fields * group.order
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(out_fields)) if bias else None
        # index of the expanded row (|G|, in_channels, k, k) into the flat bank of one out field
        self.register_buffer("index", index.reshape(-1), persistent=False)
        if not init_skipped():
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s default init with the fan-in of the expanded weight."""
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size**2)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def expand(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The dense ``(out_fields*|G|, in_channels, k, k)`` weight and the repeated bias."""
        k = self.kernel_size
        flat = self.weight.reshape(self.out_fields, -1)
        weight = flat.index_select(1, self.index).view(self.out_channels, self.in_channels, k, k)
        bias = None if self.bias is None else self.bias.repeat_interleave(self.group.order)
        return weight, bias

    def extra_repr(self) -> str:
        return f"{self.group.name}, {super().extra_repr()}, bias={self.bias is not None}"


class Rot90LiftingConv(_Rot90Conv):
    """Image to regular fields: ``(B, in_channels, H, W) -> (B, out_fields*|G|, H, W)``.

    ``out[o, g] = sum_c x[c] * g(psi[o, c])``; parameters ``weight`` ``(out_fields,
    in_channels, k, k)``. Equivariance: ``lift(g . x) = g . lift(x)`` (``x`` a scalar image).

    Args:
        in_channels: image channels.
        out_fields: the number of output regular fields.
        kernel_size: the odd kernel size ``k`` (odd: the kernel's centre is a pixel).
        group: a group whose rotations are multiples of 90 degrees (``P4``, ``P4M``, ...).
        bias: learn a bias per output field (repeated over its ``|G|`` channels).
    """

    def __init__(
        self,
        in_channels: int,
        out_fields: int,
        kernel_size: int = 3,
        group: Group = P4,
        bias: bool = False,
    ) -> None:
        _check_kernel(kernel_size)
        kk = kernel_size * kernel_size
        spatial = group.kernel_permutations(kernel_size).view(group.order, 1, kk)
        index = torch.arange(in_channels).view(1, -1, 1) * kk + spatial  # (|G|, C, k*k)
        shape = (out_fields, in_channels, kernel_size, kernel_size)
        super().__init__(group, shape, index, in_channels, out_fields, kernel_size, bias)


class Rot90GroupConv(_Rot90Conv):
    """Regular fields to regular fields: ``(B, in_fields*|G|, H, W) -> (B, out_fields*|G|, H, W)``.

    ``out[o, g] = sum_{i, h} x[i, h] * g(psi[o, i, g^{-1} h])``; parameters ``weight``
    ``(out_fields, in_fields, |G|, k, k)``. Equivariance: ``conv(g . x) = g . conv(x)``.

    Args:
        in_fields: the number of input regular fields.
        out_fields: the number of output regular fields.
        kernel_size: the odd kernel size ``k``.
        group: a group whose rotations are multiples of 90 degrees (``P4``, ``P4M``, ...).
        bias: learn a bias per output field (repeated over its ``|G|`` channels).
    """

    def __init__(
        self,
        in_fields: int,
        out_fields: int,
        kernel_size: int = 3,
        group: Group = P4,
        bias: bool = False,
    ) -> None:
        _check_kernel(kernel_size)
        n, kk = group.order, kernel_size * kernel_size
        spatial = group.kernel_permutations(kernel_size).view(n, 1, 1, kk)
        source = group.quotient_table.view(n, 1, n, 1)  # [g, h] = g^{-1} h
        fields = torch.arange(in_fields).view(1, -1, 1, 1)
        index = (fields * n + source) * kk + spatial  # (|G|, in_fields, |G|, k*k)
        shape = (out_fields, in_fields, n, kernel_size, kernel_size)
        super().__init__(group, shape, index, in_fields * n, out_fields, kernel_size, bias)
        self.in_fields = in_fields


class Rot90Family(ConvFamily):
    """The p4 (``flip=False``) or p4m (``flip=True``) :class:`~zoo.family.ConvFamily`.

    Regular fields of ``C4`` (``|G| = 4``) or ``D4`` (8), so every other hook is the default.

    Args:
        flip: add the mirror: ``D4`` (p4m) instead of ``C4`` (p4).
        kernel_size: the (odd) kernel size of every conv when the skeleton passes none.
        bias: give every conv a per-field bias (off: in the U-Net each is followed by group
            batch norm).
    """

    def __init__(self, flip: bool = False, kernel_size: int = 3, bias: bool = False) -> None:
        _check_kernel(kernel_size)
        self.group = P4M if flip else P4
        self.flip = flip
        self.kernel_size = kernel_size
        self.bias = bias

    def lift(
        self, in_channels: int, out_fields: int, kernel_size: int | None = None
    ) -> Rot90LiftingConv:
        """``(B, in_channels, H, W) -> (B, out_fields*|G|, H, W)``."""
        return Rot90LiftingConv(in_channels, out_fields, self.kernel(kernel_size), self.group,
                                self.bias)  # fmt: skip

    def conv(
        self, in_fields: int, out_fields: int, kernel_size: int | None = None
    ) -> Rot90GroupConv:
        """``(B, in_fields*|G|, H, W) -> (B, out_fields*|G|, H, W)``."""
        return Rot90GroupConv(in_fields, out_fields, self.kernel(kernel_size), self.group,
                              self.bias)  # fmt: skip

    def __repr__(self) -> str:
        return f"Rot90Family({self.group.name}, kernel_size={self.kernel_size})"
