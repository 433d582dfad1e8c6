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

from typing import Any

import torch

from zoo.base import RegularBankConv2d
from zoo.family import ConvPairFamily
from zoo.groups import P4, P4M, Group


def _check_kernel(kernel_size: int) -> None:
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"exact equivariance needs an odd kernel size, got {kernel_size}")


def expansion_index(group: Group, in_fields: int, kernel_size: int, lifting: bool) -> torch.Tensor:
    """Where each tap of one output field's expanded weight comes from in its flat bank.

    ``(|G|, in_fields, S_in, k*k)`` indices into ``weight[o].reshape(-1)`` (``S_in = 1`` when
    lifting, else ``|G|``): entry ``[g, i, h, a]`` picks the learned tap that lands on tap ``a``
    of ``g(psi[o, i, g^{-1} h])`` (of ``g(psi[o, i])`` when lifting).
    """
    n, kk = group.order, kernel_size * kernel_size
    spatial = group.kernel_permutations(kernel_size).view(n, 1, 1, kk)
    if lifting:
        in_size, source = 1, torch.zeros(n, 1, 1, 1, dtype=torch.long)
    else:
        in_size, source = n, group.quotient_table.view(n, 1, n, 1)  # [g, h] = g^{-1} h
    fields = torch.arange(in_fields).view(1, -1, 1, 1)
    return (fields * in_size + source) * kk + spatial


class Rot90Conv(RegularBankConv2d):
    """The p4/p4m conv (lift or group, :attr:`~zoo.base.FieldConv2d.lifting`): one learned bank
    ``weight`` per output field, one index buffer, an optional per-field bias.

    Lift, ``(B, in_fields, H, W) -> (B, out_fields*|G|, H, W)``: ``out[o, g] = sum_c x[c] *
    g(psi[o, c])``, ``weight`` ``(out_fields, in_fields, k, k)``. Group conv, ``(B,
    in_fields*|G|, H, W) -> (B, out_fields*|G|, H, W)``: ``out[o, g] = sum_{i, h} x[i, h] *
    g(psi[o, i, g^{-1} h])``, ``weight`` ``(out_fields, in_fields, |G|, k, k)``. Equivariance:
    ``layer(g . x) = g . layer(x)`` (``x`` a scalar image for the lift).

    Args:
        in_fields: the number of input regular fields (image channels for the lift).
        out_fields: the number of output regular fields.
        kernel_size: the odd kernel size ``k`` (odd: the kernel's centre is a pixel).
        group: a group whose rotations are multiples of 90 degrees (``P4``, ``P4M``, ...).
        bias: learn a bias per output field (repeated over its ``|G|`` channels).
    """

    index: torch.Tensor

    def __init__(
        self,
        in_fields: int,
        out_fields: int,
        kernel_size: int = 3,
        group: Group = P4,
        bias: bool = False,
    ) -> None:
        _check_kernel(kernel_size)
        taps = kernel_size * kernel_size
        super().__init__(in_fields, out_fields, kernel_size, group.order, bias, taps)
        self.group = group
        index = expansion_index(group, in_fields, kernel_size, self.lifting)
        self.register_buffer("index", index.reshape(-1), persistent=False)

    def expand(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The dense ``(out_fields*|G|, in_channels, k, k)`` weight and the repeated bias."""
        k = self.kernel_size
        flat = self.weight.reshape(self.out_fields, -1)
        weight = flat.index_select(1, self.index).view(self.out_channels, self.in_channels, k, k)
        return weight, self.expanded_bias()

    def extra_repr(self) -> str:
        return f"{self.group.name}, {super().extra_repr()}, bias={self.bias is not None}"


class Rot90LiftConv(Rot90Conv):
    """Image to regular fields, :class:`Rot90Conv` with ``in_fields`` image channels."""

    lifting = True


class Rot90GroupConv(Rot90Conv):
    """Regular fields to regular fields, :class:`Rot90Conv` with ``in_fields`` regular fields."""

    lifting = False


class Rot90Family(ConvPairFamily):
    """The p4 (``flip=False``) or p4m (``flip=True``) :class:`~zoo.family.ConvFamily`.

    Regular fields of ``C4`` (``|G| = 4``) or ``D4`` (8), so every other hook is the default.

    Args:
        flip: add the mirror: ``D4`` (p4m) instead of ``C4`` (p4).
        kernel_size: the (odd) kernel size of every conv when the skeleton passes none.
        bias: give every conv a per-field bias (off: in the U-Net each is followed by group
            batch norm).
    """

    lift_conv = Rot90LiftConv
    group_conv = Rot90GroupConv

    def __init__(self, flip: bool = False, kernel_size: int = 3, bias: bool = False) -> None:
        _check_kernel(kernel_size)
        self.group = P4M if flip else P4
        self.flip = flip
        self.kernel_size = kernel_size
        self.bias = bias

    def conv_options(self) -> dict[str, Any]:
        """Every conv's ``group`` and ``bias``."""
        return {"group": self.group, "bias": self.bias}

    def __repr__(self) -> str:
        return f"Rot90Family({self.group.name}, kernel_size={self.kernel_size})"
