"""The plain family: ``nn.Conv2d``, ``|G| = 1``; the skeleton with it is the baseline U-Net."""

from __future__ import annotations

from torch import nn

from zoo.family import ConvFamily
from zoo.groups import TRIVIAL

__all__ = ["PlainFamily"]


class PlainFamily(ConvFamily):
    """:class:`~zoo.family.ConvFamily` of plain ``nn.Conv2d`` (no bias: batch norm follows).

    Its group is the trivial ``C_1`` and a field is one channel, so the skeleton's group batch
    norm is ``BatchNorm2d`` and its rotation pooling the identity: the ``unet`` variant.

    Args:
        kernel_size: the kernel size of every conv (the skeleton never passes its own).
    """

    group = TRIVIAL

    def __init__(self, kernel_size: int = 3) -> None:
        self.kernel_size = kernel_size

    def lift(self, in_channels: int, out_fields: int, kernel_size: int | None = None) -> nn.Conv2d:
        """``(B, in_channels, H, W) -> (B, out_fields, H, W)``."""
        k = self.kernel(kernel_size)
        return nn.Conv2d(in_channels, out_fields, k, padding=k // 2, bias=False)

    def conv(self, in_fields: int, out_fields: int, kernel_size: int | None = None) -> nn.Conv2d:
        """``(B, in_fields, H, W) -> (B, out_fields, H, W)``."""
        return self.lift(in_fields, out_fields, kernel_size)

    def __repr__(self) -> str:
        return f"PlainFamily(kernel_size={self.kernel_size})"
