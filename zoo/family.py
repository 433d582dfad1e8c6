"""The contract between the U-Net skeleton and a convolution family (a variant's group).

:class:`ConvFamily` declares every hook the skeleton (:class:`zoo.unet.UNet`) calls, in one
place. A family must give its group and its two convolutions:

* :attr:`~ConvFamily.group`: the group the model is exactly equivariant to;
* :meth:`~ConvFamily.lift`: image to fields, ``(B, C_in, H, W) -> (B, C_out*S, H, W)``;
* :meth:`~ConvFamily.conv`: fields to fields, ``(B, C_in*S, H, W) -> (B, C_out*S, H, W)``,

with ``S =`` :attr:`~ConvFamily.group_size` channels per field. Every other hook has a default
for *regular fields* (``S = |G|`` channels, one per group element, group axis innermost:
channel ``c*|G| + g``), which a family whose fields are something else (the SO(2) irreps fields
of :mod:`zoo.so2`) overrides:

==========================  ===================================================  ============
hook                        default (regular fields)                             SO(2) irreps
==========================  ===================================================  ============
``norm(fields)``            :class:`~zoo.norm.GroupBatchNorm2d` (per field)      norm BN
``activation(fields)``      ``nn.ReLU``                                          norm-ReLU
``downsample()``            ``nn.MaxPool2d(2)``                                  ``AvgPool2d``
``invariant_pool(f, mode)`` :class:`~zoo.pooling.RotationPool`, ``f`` channels   norms
``pool_modes``              ``("max", "mean")`` (the first is the default)       norm, mean
``transform(x, k, flip)``   :func:`~zoo.groups.transform_fields` on ``group``    rotate irreps
``regular_fields``          ``True``                                             ``False``
==========================  ===================================================  ============

Most families' two convs are one :class:`~zoo.base.FieldConv2d` pair,
``<Family>LiftConv`` and ``<Family>GroupConv``: such a family subclasses
:class:`ConvPairFamily`, names the pair (``lift_conv``, ``group_conv``) and the keyword
arguments every conv of it takes (:meth:`~ConvPairFamily.conv_options`), and inherits
:meth:`~ConvFamily.lift` and :meth:`~ConvFamily.conv`.

A family wraps another by subclassing :class:`WrappedFamily`, which delegates every hook to
its ``base`` and overrides some (:mod:`zoo.partial` its norm and activation, :mod:`zoo.rpp` its
convs). To add a family: subclass, give ``group``, ``kernel_size``, ``lift`` and ``conv`` (or
the pair of :class:`ConvPairFamily`),
register it in :mod:`zoo.registry`, and check a model of it with
:func:`zoo.equivariance.check_equivariance`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from zoo.base import FieldConv2d
from zoo.groups import Group, transform_fields
from zoo.norm import GroupBatchNorm2d
from zoo.options import PoolMode
from zoo.pooling import RotationPool

__all__ = ["ConvFamily", "ConvPairFamily", "WrappedFamily"]


class ConvFamily(ABC):
    """What a variant contributes to the shared U-Net skeleton (module docstring)."""

    #: The group to which the model is exactly equivariant (``C_1`` for the plain U-Net); its
    #: rot90 subgroup is what :func:`zoo.equivariance.check_equivariance` checks.
    group: Group
    #: The kernel size of :meth:`lift` and :meth:`conv` when the skeleton passes none.
    kernel_size: int
    #: Invariant pooling modes this family's fields take; the first is the default.
    pool_modes: ClassVar[tuple[PoolMode, ...]] = (PoolMode.MAX, PoolMode.MEAN)

    @property
    def group_size(self) -> int:
        """Channels per field: ``|G|`` for regular fields (1 for the plain U-Net)."""
        return self.group.order

    @property
    def regular_fields(self) -> bool:
        """Whether a field is a regular field of :attr:`group` (``group_size == |G|``)."""
        return True

    def kernel(self, kernel_size: int | None) -> int:
        """``kernel_size``, or the family's :attr:`kernel_size` when ``None``."""
        return self.kernel_size if kernel_size is None else kernel_size

    # -- required --------------------------------------------------------------------------
    @abstractmethod
    def lift(self, in_channels: int, out_fields: int, kernel_size: int | None = None) -> nn.Module:
        """Image to fields: ``(B, in_channels, H, W) -> (B, out_fields*group_size, H, W)``."""

    @abstractmethod
    def conv(self, in_fields: int, out_fields: int, kernel_size: int | None = None) -> nn.Module:
        """Fields to fields: ``(B, in_fields*S, H, W) -> (B, out_fields*S, H, W)``."""

    # -- defaults for regular fields -------------------------------------------------------
    def norm(self, fields: int) -> nn.Module:
        """Batch norm after every conv, ``(B, fields*S, H, W)`` to the same shape: one mean,
        variance and affine per field (:class:`~zoo.norm.GroupBatchNorm2d`)."""
        return GroupBatchNorm2d(fields, self.group_size)

    def activation(self, fields: int) -> nn.Module:
        """The nonlinearity after every norm: ``nn.ReLU`` (pointwise, so it commutes with the
        permutation of a regular field's channels)."""
        return nn.ReLU(inplace=True)

    def downsample(self) -> nn.Module:
        """The encoder's 2x2 downsampling: ``nn.MaxPool2d(2)`` (channel-wise, so fields stay
        whole; rot90-equivariant on sides divisible by 2, :mod:`zoo.sizes`)."""
        return nn.MaxPool2d(2)

    def invariant_pool(self, fields: int, mode: PoolMode) -> tuple[nn.Module, int]:
        """``(module, channels)``: an invariant map of the last ``fields`` fields for the 1x1
        head, ``(B, fields*S, H, W) -> (B, channels, H, W)``; ``mode`` is one of
        :attr:`pool_modes` (:class:`~zoo.pooling.RotationPool` over each group axis)."""
        return RotationPool(self.group_size, mode), fields

    def transform(
        self, x: torch.Tensor, quarter_turns: int = 0, flip: bool = False
    ) -> torch.Tensor:
        """How the rot90 element ``(quarter_turns, flip)`` acts on this family's field maps
        ``(B, C*S, H, W)`` (:func:`zoo.groups.transform_fields` on :attr:`group`)."""
        return transform_fields(x, self.group, quarter_turns, flip)


class ConvPairFamily(ConvFamily):
    """A family whose convs are one :class:`~zoo.base.FieldConv2d` pair, built the same way.

    ``lift(in_channels, out_fields, k)`` is ``lift_conv(in_channels, out_fields, k,
    **conv_options())`` and ``conv(in_fields, out_fields, k)`` is ``group_conv(in_fields,
    out_fields, k, **conv_options())``, ``k`` the family's :attr:`kernel_size` when ``None``.
    """

    #: Image to fields: ``(B, in_channels, H, W) -> (B, out_fields*group_size, H, W)``.
    lift_conv: ClassVar[type[FieldConv2d]]
    #: Fields to fields: ``(B, in_fields*group_size, H, W) -> (B, out_fields*group_size, H, W)``.
    group_conv: ClassVar[type[FieldConv2d]]

    @abstractmethod
    def conv_options(self) -> dict[str, Any]:
        """The keyword arguments of every conv of the family besides the field counts and the
        kernel size (its group, bias, basis options)."""

    def lift(self, in_channels: int, out_fields: int, kernel_size: int | None = None) -> nn.Module:
        """``(B, in_channels, H, W) -> (B, out_fields*group_size, H, W)``: a ``lift_conv``."""
        k = self.kernel(kernel_size)
        return self.lift_conv(in_channels, out_fields, k, **self.conv_options())

    def conv(self, in_fields: int, out_fields: int, kernel_size: int | None = None) -> nn.Module:
        """``(B, in_fields*S, H, W) -> (B, out_fields*S, H, W)``: a ``group_conv``."""
        k = self.kernel(kernel_size)
        return self.group_conv(in_fields, out_fields, k, **self.conv_options())


class WrappedFamily(ConvFamily):
    """A family built on another: every hook is ``base``'s unless a subclass overrides it.

    ``options`` names the keyword arguments the wrapper takes itself (the registry hands the
    other variant options to ``base``).

    Args:
        base: the family wrapped.
    """

    #: Keyword arguments of the wrapper's constructor besides ``base``.
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, base: ConvFamily) -> None:
        if not isinstance(base, ConvFamily):
            raise TypeError(f"a wrapped family needs a ConvFamily, got {type(base).__name__}")
        self.base = base

    @property
    def group(self) -> Group:  # type: ignore[override]
        return self.base.group

    @property
    def kernel_size(self) -> int:  # type: ignore[override]
        return self.base.kernel_size

    @property
    def pool_modes(self) -> tuple[PoolMode, ...]:  # type: ignore[override]
        return self.base.pool_modes

    @property
    def group_size(self) -> int:
        return self.base.group_size

    @property
    def regular_fields(self) -> bool:
        return self.base.regular_fields

    def lift(self, in_channels: int, out_fields: int, kernel_size: int | None = None) -> nn.Module:
        return self.base.lift(in_channels, out_fields, kernel_size)

    def conv(self, in_fields: int, out_fields: int, kernel_size: int | None = None) -> nn.Module:
        return self.base.conv(in_fields, out_fields, kernel_size)

    def norm(self, fields: int) -> nn.Module:
        return self.base.norm(fields)

    def activation(self, fields: int) -> nn.Module:
        return self.base.activation(fields)

    def downsample(self) -> nn.Module:
        return self.base.downsample()

    def invariant_pool(self, fields: int, mode: PoolMode) -> tuple[nn.Module, int]:
        return self.base.invariant_pool(fields, mode)

    def transform(
        self, x: torch.Tensor, quarter_turns: int = 0, flip: bool = False
    ) -> torch.Tensor:
        return self.base.transform(x, quarter_turns, flip)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base!r})"
