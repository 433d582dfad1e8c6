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

Tensor layout (docs/design.md): a feature map over a group ``G`` is ``(B, C*|G|, H, W)`` with the
group axis innermost, channel ``c*|G| + g``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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
