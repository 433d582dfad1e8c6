"""The one place where an expanded filter bank becomes a convolution.

Every group convolution in ``zoo`` (p4, p4m, SE(2,N), steerable) differs only in how it builds
its *expanded* weight: the dense ``(C_out*|G|, C_in*|G_in|, k, k)`` bank that a plain
``conv2d`` applies. :class:`ExpandedConv2d` owns everything else, once:

* ``forward``: one ``F.conv2d`` with the expanded weight and ``padding=k//2`` ("same", zero,
  symmetric: it commutes with ``rot90`` for odd ``k``);
* the eval-mode cache: the expanded weight is built once and reused until ``train()`` is called
  or a parameter changes (tracked by the parameters' in-place version counters, so an optimiser
  step invalidates it);
* ``to_conv2d()``: an equivalent ``nn.Conv2d`` holding the frozen expanded weight (used by
  ``export()`` for deployment without zoo or e2cnn).

Every family's pair of convs derives from :class:`FieldConv2d`: one class of the family
implements both the lift conv (image channels to fields) and the group conv (fields to fields),
and the pair is two subclasses that only set :attr:`FieldConv2d.lifting`,
``<Family>LiftConv`` and ``<Family>GroupConv`` (:class:`zoo.family.ConvPairFamily` builds
them). :class:`RegularBankConv2d` adds the parameters the p4/p4m and SE(2,N) convs share: one
learned bank per output field, expanded over the group.

Tensor layout (docs/design.md): a feature map over a group ``G`` is ``(B, C*|G|, H, W)`` with the
group axis innermost, channel ``c*|G| + g``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

_SKIP_INIT: list[bool] = [False]


@contextlib.contextmanager
def uninitialized() -> Iterator[None]:
    """Within: expanded convs built here skip their weight initialisation (the weights hold
    whatever ``torch.empty`` gave). For counting parameters and MACs only (``describe_variant``)."""
    previous = _SKIP_INIT[0]
    _SKIP_INIT[0] = True
    try:
        yield
    finally:
        _SKIP_INIT[0] = previous


def init_skipped() -> bool:
    """Whether :func:`uninitialized` is in effect."""
    return _SKIP_INIT[0]


class ExpandedConv2d(nn.Module):
    """Base class: a convolution whose dense weight is expanded from fewer parameters.

    Subclasses implement :meth:`expand` returning ``(weight, bias)`` with ``weight`` of shape
    ``(out_channels, in_channels, k, k)`` (expanded channel counts) and ``bias`` of shape
    ``(out_channels,)`` or ``None``; they set ``self.kernel_size``, ``self.in_channels`` and
    ``self.out_channels`` (expanded counts).
    """

    kernel_size: int
    in_channels: int
    out_channels: int

    def __init__(self) -> None:
        super().__init__()
        self._cache: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._cache_key: tuple | None = None

    # -- to implement -----------------------------------------------------------------------
    def expand(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Build the dense expanded ``(weight, bias)`` from the learned parameters."""
        raise NotImplementedError

    # -- shared machinery -------------------------------------------------------------------
    def _parameter_key(self) -> tuple:
        return tuple((p.data_ptr(), p._version, p.device, p.dtype) for p in self.parameters())

    def expanded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The expanded ``(weight, bias)``.

        Rebuilt on every call in train mode, and in eval mode while autograd is recording (a
        cached, detached weight would silently cut the gradient to the parameters). In eval mode
        under ``no_grad``/``inference_mode`` it is built once and reused until ``train()`` or a
        parameter change (an optimiser step bumps the version counters in the key).
        """
        if self.training or torch.is_grad_enabled():
            self._cache = None
            return self.expand()
        key = self._parameter_key()
        if self._cache is None or self._cache_key != key:
            weight, bias = self.expand()
            self._cache = (weight, bias)
            self._cache_key = key
        return self._cache

    def train(self, mode: bool = True) -> ExpandedConv2d:
        self._cache = None
        self._cache_key = None
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W) -> (B, out_channels, H, W)``."""
        weight, bias = self.expanded()
        return F.conv2d(x, weight, bias, padding=self.kernel_size // 2)

    @torch.no_grad()
    def to_conv2d(self) -> nn.Conv2d:
        """An ``nn.Conv2d`` with the frozen expanded weight; same output to float rounding."""
        weight, bias = self.expand()
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            padding=self.kernel_size // 2,
            bias=bias is not None,
        ).to(device=weight.device, dtype=weight.dtype)
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
        return conv

    def extra_repr(self) -> str:
        return f"{self.in_channels}->{self.out_channels}, k={self.kernel_size}"


class FieldConv2d(ExpandedConv2d):
    """A family's conv to ``out_fields`` fields of ``field_size`` channels each.

    The input is ``in_fields`` image channels for the lift conv (:attr:`lifting`: one channel
    per input "field") or ``in_fields`` fields of the same kind as the output for the group
    conv: ``(B, in_fields*in_size, H, W) -> (B, out_fields*field_size, H, W)`` with
    ``in_size = 1`` when lifting, else ``field_size``. Sets :attr:`in_fields`,
    :attr:`out_fields`, :attr:`in_size`, :attr:`out_size` and the expanded channel counts.

    Args:
        in_fields: the number of input fields (image channels for the lift conv).
        out_fields: the number of output fields.
        kernel_size: the kernel size ``k``.
        field_size: channels per output field (``|G|`` for regular fields).
        lifting: whether the input is an image; ``None``: the class's :attr:`lifting`.
    """

    #: ``True`` for a family's lift conv (image to fields), ``False`` for its group conv.
    lifting: ClassVar[bool] = False

    def __init__(
        self,
        in_fields: int,
        out_fields: int,
        kernel_size: int,
        field_size: int,
        lifting: bool | None = None,
    ) -> None:
        super().__init__()
        if lifting is not None:
            self.lifting = lifting  # type: ignore[misc]  # this layer's, not the class's
        self.kernel_size = kernel_size
        self.in_fields, self.out_fields = in_fields, out_fields
        self.in_size = 1 if self.lifting else field_size
        self.out_size = field_size
        self.in_channels = in_fields * self.in_size
        self.out_channels = out_fields * field_size


class RegularBankConv2d(FieldConv2d):
    """A :class:`FieldConv2d` to regular fields learning one kernel bank per output field.

    Parameters: ``weight`` ``(out_fields, in_fields, k, k)`` when lifting, else
    ``(out_fields, in_fields, |G|, k, k)`` (a kernel per input channel), and with ``bias`` a
    ``bias`` ``(out_fields,)`` repeated over each field's ``|G|`` channels
    (:meth:`expanded_bias`). Initialised as ``nn.Conv2d`` is, with the fan-in of the expanded
    layer, ``in_channels * taps``. A subclass gives :meth:`expand`.

    Args:
        in_fields: the number of input fields (image channels for the lift conv).
        out_fields: the number of output regular fields.
        kernel_size: the kernel size ``k``.
        order: the group's order ``|G|`` (channels per field).
        bias: learn a bias per output field.
        taps: the kernel taps one input channel contributes to the fan-in (``k*k``, or those
            inside a disc).
        bias_first: register ``bias`` before ``weight`` (the parameter order, which optimiser
            states index by position, that a family's earlier versions had).
    """

    def __init__(
        self,
        in_fields: int,
        out_fields: int,
        kernel_size: int,
        order: int,
        bias: bool,
        taps: int,
        bias_first: bool = False,
    ) -> None:
        super().__init__(in_fields, out_fields, kernel_size, order)
        self.taps = taps
        in_group = () if self.lifting else (order,)
        shape = (out_fields, in_fields, *in_group, kernel_size, kernel_size)
        if bias_first:
            self.bias = nn.Parameter(torch.empty(out_fields)) if bias else None
        self.weight = nn.Parameter(torch.empty(shape))
        if not bias_first:
            self.bias = nn.Parameter(torch.empty(out_fields)) if bias else None
        if not init_skipped():
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s default init, uniform within ``1/sqrt(in_channels * taps)``."""
        bound = 1.0 / math.sqrt(self.in_channels * self.taps)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound)

    def expanded_bias(self) -> torch.Tensor | None:
        """The field bias ``(out_fields,)`` repeated over the group axis:
        ``(out_fields*|G|,)``, or ``None``."""
        return None if self.bias is None else self.bias.repeat_interleave(self.out_size)
