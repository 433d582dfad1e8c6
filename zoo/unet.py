"""The one U-Net skeleton of every variant, parametrised by a :class:`~zoo.family.ConvFamily`.

::

    image ─ lift ─ conv ───────────────────────────────── cat ─ conv ─ conv ─ rotation pool ─ 1x1
                    └ maxpool ─ conv ─ conv ── ... ── upsample ┘
                       (depth levels down, depth levels up; every conv is conv+GBN+ReLU)

Stage ``i`` has ``width * 2**i`` fields (``(B, width*2**i*|G|, H/2**i, W/2**i)``). The decoder
upsamples (bilinear x2 by default), concatenates the skip *before* the upsampled map (whole
fields, group axis innermost, so the concatenation is again a regular field map) and applies two
conv+GBN+ReLU. Rotation pooling over the group axis gives an invariant ``(B, width, H, W)`` map
and a plain 1x1 ``nn.Conv2d`` gives the logits.

Every step commutes with the family's rot90 subgroup (odd kernels, zero "same" padding, 2x2
pooling on sides divisible by ``2**depth``, symmetric upsampling, per-field batch norm), so for
an equivariant family ``model(g . x) = g(model(x))``: the logits rotate (and mirror) with the
input. The plain baseline is this skeleton with :class:`PlainFamily` (``|G| = 1``).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch
from torch import nn

from zoo.family import ConvFamily
from zoo.groups import TRIVIAL, Group
from zoo.norm import GroupBatchNorm2d
from zoo.options import PoolMode, UpsampleMode
from zoo.pooling import RotationPool, upsample2x
from zoo.sizes import check_input_size


class PlainFamily:
    """``|G| = 1``: plain ``nn.Conv2d`` (no bias, batch norm follows), the baseline U-Net.

    ``kernel_size`` is used when the skeleton passes none (it never does: families own it).
    """

    group = TRIVIAL
    group_size = 1

    def __init__(self, kernel_size: int = 3) -> None:
        self.kernel_size = kernel_size

    def lift(self, in_channels: int, out_fields: int, kernel_size: int | None = None) -> nn.Conv2d:
        """``(B, in_channels, H, W) -> (B, out_fields, H, W)``."""
        k = self.kernel_size if kernel_size is None else kernel_size
        return nn.Conv2d(in_channels, out_fields, k, padding=k // 2, bias=False)

    def conv(self, in_fields: int, out_fields: int, kernel_size: int | None = None) -> nn.Conv2d:
        """``(B, in_fields, H, W) -> (B, out_fields, H, W)``."""
        return self.lift(in_fields, out_fields, kernel_size)

    def __repr__(self) -> str:
        return f"PlainFamily(kernel_size={self.kernel_size})"


def group_of(family: ConvFamily) -> Group:
    """The family's group: its ``group`` attribute, else ``C_N`` (or ``D_N`` if ``flip``)."""
    group = getattr(family, "group", None)
    if isinstance(group, Group):
        return group
    flip = bool(getattr(family, "flip", False))
    return Group(family.group_size // (2 if flip else 1), flip)


class UNet(nn.Module):
    """``(B, in_channels, H, W) -> (B, out_channels, H, W)`` logits; H, W divisible by 2**depth.

    Args:
        family: builds the lifting and group convs (``family.group_size`` channels per field).
        in_channels, out_channels: image channels and logit channels.
        width: fields of the first stage (doubled at every level down).
        depth: number of 2x2 poolings (and of upsamplings).
        upsample: ``"bilinear"`` (``align_corners=False``) or ``"nearest"``, both x2.
        rotation_pool: ``"max"`` or ``"mean"`` over the group axis before the head.

    The kernel size is the family's (3 for p4/p4m/plain, 5 for SE(2,N); a variant option).

    Fields other than regular ones (e.g. SO(2) irreps, where a max over a window or over the
    channels of a field is not equivariant) plug in through optional family methods, each
    defaulting to the regular-field part: ``norm(fields)`` (:class:`GroupBatchNorm2d`),
    ``activation(fields)`` (ReLU), ``downsample()`` (``MaxPool2d(2)``) and
    ``invariant_pool(fields) -> (module, channels)`` (:class:`RotationPool`, ``fields``).
    """

    def __init__(
        self,
        family: ConvFamily,
        in_channels: int = 3,
        out_channels: int = 1,
        width: int = 16,
        depth: int = 4,
        upsample: UpsampleMode | str = UpsampleMode.BILINEAR,
        rotation_pool: PoolMode | str = PoolMode.MAX,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if width < 1 or depth < 0:
            raise ValueError(f"width must be >= 1 and depth >= 0, got {width} and {depth}")
        n = family.group_size
        self.group_size = n
        #: the group acting on the fields (``C_1`` for the plain U-Net)
        self.group = group_of(family)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.width, self.depth = width, depth
        #: how to rebuild this model (set by :func:`zoo.create`): ``{"variant": name, **kwargs}``
        self.config: dict[str, Any] = {}

        norm = getattr(family, "norm", None) or (lambda f: GroupBatchNorm2d(f, n))
        activation = getattr(family, "activation", None) or (lambda f: nn.ReLU(inplace=True))
        downsample = getattr(family, "downsample", None) or (lambda: nn.MaxPool2d(2))
        invariant = getattr(family, "invariant_pool", None) or (
            lambda f: (RotationPool(n, rotation_pool), f)
        )

        def block(conv: nn.Module, fields: int) -> nn.Sequential:
            return nn.Sequential(conv, norm(fields), activation(fields))

        widths = [width * 2**i for i in range(depth + 1)]
        w0 = widths[0]
        self.encoder = nn.ModuleList(
            [nn.Sequential(block(family.lift(in_channels, w0), w0), block(family.conv(w0, w0), w0))]
        )
        for lo, hi in pairwise(widths):
            self.encoder.append(
                nn.Sequential(downsample(), block(family.conv(lo, hi), hi),
                              block(family.conv(hi, hi), hi))
            )  # fmt: skip
        self.upsample = upsample2x(upsample)
        self.decoder = nn.ModuleList(
            nn.Sequential(block(family.conv(hi + lo, lo), lo), block(family.conv(lo, lo), lo))
            for lo, hi in reversed(list(pairwise(widths)))
        )
        self.pool, pooled = invariant(w0)
        self.head = nn.Conv2d(pooled, out_channels, 1)

    def check_input(self, x: torch.Tensor) -> None:
        """``ValueError`` unless ``x`` is ``(B, in_channels, H, W)`` with ``2**depth | H, W``
        (:func:`zoo.sizes.check_input_size`)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        check_input_size((x.shape[-2], x.shape[-1]), self.depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W) -> (B, out_channels, H, W)`` logits."""
        if not isinstance(x, torch.fx.Proxy):  # export's trace: the check needs real sizes
            self.check_input(x)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        for stage in self.decoder:
            x = stage(torch.cat([skips.pop(), self.upsample(x)], dim=1))
        return self.head(self.pool(x))

    def export(self) -> nn.Module:
        """An equivalent plain module (torch only); see :func:`zoo.export.export`."""
        from zoo.export import export

        return export(self)
