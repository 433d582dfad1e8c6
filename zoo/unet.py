"""The one U-Net skeleton of every variant, parametrised by a :class:`~zoo.family.ConvFamily`.

::

    image ─ lift ─ conv ──────────────────────── cat ─ conv ─ conv ─ rotation pool ─ [BN] ─ 1x1
                    └ maxpool ─ conv ─ conv ── ... ── upsample ┘
                       (depth levels down, depth levels up; every conv is conv+GBN+ReLU)

Stage ``i`` has ``width * 2**i`` fields (``(B, width*2**i*|G|, H/2**i, W/2**i)``). The decoder
upsamples (bilinear x2 by default), concatenates the skip *before* the upsampled map (whole
fields, group axis innermost, so the concatenation is again a regular field map) and applies two
conv+GBN+ReLU. Rotation pooling over the group axis gives an invariant ``(B, width, H, W)`` map
and a plain 1x1 ``nn.Conv2d`` gives the logits.

**Head norm** (``head_norm``, on by default): a ``BatchNorm2d`` on the invariant map before the
1x1 head, whose bias starts at zero. Rotation pooling of ReLU fields (the max or the norm over a
field's ``|G|`` non-negative channels) is non-negative with a mean that grows with ``|G|`` (for
standard-normal pre-activations, the max of 8 ReLU'd values has mean ~1.4 and spread ~0.6), and
even the plain U-Net's last map is ReLU'd: a random 1x1 head turns such a map into nearly
constant logits, so an untrained model can predict all foreground or all background whatever
the input (``scripts/init_offsets.py``: ``|mean| / std`` of the initial logits 2.0-3.7 for the
CPU study's slow and failed starts, 2.3 for an untried plain seed). Normalising each invariant
channel to zero mean and unit variance over the batch (per channel of an invariant map, so it
commutes with every rotation and mirror) and starting the head's bias at zero (the prior 0.5)
makes the initial logits' mean zero and their spread the head's weights: the first prediction
depends on the input for every variant and seed. Configs
recorded before this option existed were built without it (:data:`zoo.registry.RECORDED_BEFORE`).

Every step commutes with the family's rot90 subgroup (odd kernels, zero "same" padding, 2x2
pooling on sides divisible by ``2**depth``, symmetric upsampling, per-field batch norm), so for
an equivariant family ``model(g . x) = g(model(x))``: the logits rotate (and mirror) with the
input. The plain baseline is this skeleton with :class:`zoo.plain.PlainFamily` (``|G| = 1``).
What a family must and may supply: :mod:`zoo.family`.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch
from torch import nn

from zoo.export import export as export_model
from zoo.family import ConvFamily
from zoo.options import PoolMode, UpsampleMode, look_up_option
from zoo.pooling import upsample2x
from zoo.sizes import DEFAULT_DEPTH, check_input_size


class UNet(nn.Module):
    """``(B, in_channels, H, W) -> (B, out_channels, H, W)`` logits; H, W divisible by 2**depth.

    Args:
        family: the variant's :class:`~zoo.family.ConvFamily`: its convs, and every per-field
            step (norm, activation, downsampling, invariant pooling) of its kind of field.
        in_channels: image channels.
        out_channels: logit channels.
        width: fields of the first stage (doubled at every level down).
        depth: number of 2x2 poolings (and of upsamplings).
        upsample: ``"bilinear"`` (``align_corners=False``) or ``"nearest"``, both x2.
        rotation_pool: how the last fields become an invariant map before the head, one of
            ``family.pool_modes`` (``"max"`` or ``"mean"`` over the group axis for regular
            fields); ``None``: the family's default (its first mode).
        head_norm: a ``BatchNorm2d`` on the invariant map before the 1x1 head, whose bias then
            starts at zero (see the module docstring); ``False``: the head of the models
            recorded before it (a random bias on the un-normalised map).

    The kernel size is the family's (3 for p4/p4m/plain, 5 for SE(2,N); a variant option).
    ``model.family`` is the family, ``model.group`` its group (``C_1`` for the plain U-Net).
    """

    def __init__(
        self,
        family: ConvFamily,
        in_channels: int = 3,
        out_channels: int = 1,
        width: int = 16,
        depth: int = DEFAULT_DEPTH,
        upsample: UpsampleMode | str = UpsampleMode.BILINEAR,
        rotation_pool: PoolMode | str | None = None,
        head_norm: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(family, ConvFamily):
            raise TypeError(f"family must be a zoo.family.ConvFamily, got {type(family).__name__}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if width < 1 or depth < 0:
            raise ValueError(f"width must be >= 1 and depth >= 0, got {width} and {depth}")
        pool_mode = look_up_option(
            family.pool_modes[0] if rotation_pool is None else rotation_pool,
            PoolMode, "rotation_pool", family.pool_modes,
        )  # fmt: skip
        #: the family that built the convs and per-field steps (not a module: no state)
        self.family = family
        self.group_size = family.group_size
        #: the group acting on the fields (``C_1`` for the plain U-Net)
        self.group = family.group
        self.in_channels, self.out_channels = in_channels, out_channels
        self.width, self.depth = width, depth
        #: how to rebuild this model (set by :func:`zoo.create`): ``{"variant": name, **kwargs}``
        self.config: dict[str, Any] = {}

        def block(conv: nn.Module, fields: int) -> nn.Sequential:
            return nn.Sequential(conv, family.norm(fields), family.activation(fields))

        widths = [width * 2**i for i in range(depth + 1)]
        w0 = widths[0]
        self.encoder = nn.ModuleList(
            [nn.Sequential(block(family.lift(in_channels, w0), w0), block(family.conv(w0, w0), w0))]
        )
        for lo, hi in pairwise(widths):
            self.encoder.append(
                nn.Sequential(family.downsample(), block(family.conv(lo, hi), hi),
                              block(family.conv(hi, hi), hi))
            )  # fmt: skip
        self.upsample = upsample2x(upsample)
        self.decoder = nn.ModuleList(
            nn.Sequential(block(family.conv(hi + lo, lo), lo), block(family.conv(lo, lo), lo))
            for lo, hi in reversed(list(pairwise(widths)))
        )
        self.pool, pooled = family.invariant_pool(w0, pool_mode)
        #: whether the invariant map is batch-normalised before the head
        self.head_norm = bool(head_norm)
        self.pool_norm = nn.BatchNorm2d(pooled) if self.head_norm else nn.Identity()
        self.head = nn.Conv2d(pooled, out_channels, 1)
        if self.head_norm:  # zeroed after its draw: every weight is as without the head norm
            nn.init.zeros_(self.head.bias)

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
        return self.head(self.pool_norm(self.pool(x)))

    def export(self) -> nn.Module:
        """An equivalent plain module (torch only); see :func:`zoo.export.export`."""
        return export_model(self)
