"""The interface between the U-Net skeleton and a convolution family (a variant's group).

A family answers one question for the skeleton: how to build the lifting conv (image to group
fields) and the group conv (fields to fields) of its group, and how many channels a field has.
Everything else in the U-Net (group batch norm, ReLU, 2x2 max pooling, upsampling, skip
concatenation, rotation pooling, the 1x1 head) is shared and lives once in ``zoo.unet``.

Layout: a map of ``C`` fields is ``(B, C*group_size, H, W)``, group axis innermost
(channel ``c*group_size + g``). For the plain baseline ``group_size == 1``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import nn


@runtime_checkable
class ConvFamily(Protocol):
    """What a variant contributes to the shared U-Net skeleton."""

    #: Channels per field, ``|G|`` (1 for the plain U-Net, 4 for p4, 8 for p4m, N for SE(2,N)).
    group_size: int

    def lift(self, in_channels: int, out_fields: int, kernel_size: int = 3) -> nn.Module:
        """Image to fields: ``(B, in_channels, H, W) -> (B, out_fields*group_size, H, W)``."""
        ...

    def conv(self, in_fields: int, out_fields: int, kernel_size: int = 3) -> nn.Module:
        """Fields to fields: ``(B, in_fields*|G|, H, W) -> (B, out_fields*|G|, H, W)``."""
        ...
