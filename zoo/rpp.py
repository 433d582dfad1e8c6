"""Residual pathway priors (Finzi, Benton & Wilson, NeurIPS 2021): an equivariant layer plus a
free one, the free one held back by a much stronger prior.

Every conv of the wrapped family becomes ``W = W_eq(psi) + W_free``:

* ``W_eq(psi)``: the family's expanded equivariant filter bank ``(C_out*|G|, C_in', k, k)``
  (``C_in' = C_in`` for the lifting layer, ``C_in*|G|`` for a group conv), built from its few
  parameters ``psi`` exactly as in the equivariant variant;
* ``W_free``: a plain ``(C_out*|G|, C_in', k, k)`` conv weight with no symmetry constraint,
  **initialised at zero** and held back by the Gaussian prior of the RPP paper, i.e. the L2
  penalty ``free_decay/2 * ||W_free||^2`` added to the loss (:meth:`regularisation`, summed by
  :func:`zoo.optim.regularisation`), while the equivariant weights keep the optimiser's light
  weight decay.

The penalty is *coupled* (part of the loss, so Adam's step sees it) and the free weights are
kept out of AdamW's decoupled decay (:func:`zoo.optim.param_groups`). Under Adam the two
differ in what they let through: at equilibrium the coupled penalty leaves
``W_free ~ -grad_data / free_decay``, large only where the data keeps paying for asymmetry,
while decoupled decay bounds ``|W_free|`` by about ``1 / weight_decay`` whatever the gradient's
size, so any consistent gradient, however small, grows it. Measured on the toy tasks of
``tests/zoo/toy_tasks.py`` (6 seeds, 250 steps): with decoupled decay 10 the free/equivariant
ratio reached 0.04-0.07 on a rotation-invariant task, as much as on one that needs orientation
(0.04-0.20); with the coupled penalty (``free_decay = 3``) it stays at 0.0001-0.0005 on the
invariant task and reaches 0.004-0.04 (13-130 times more, seed by seed) on the other.

The layer computes ``out = conv2d(x, W_eq + W_free)`` -- one convolution, so it costs what the
equivariant layer costs -- and the whole model is the equivariant one (``p4`` for ``p4-rpp``)
exactly while ``W_free = 0``, i.e. at initialisation: it stays (close to) equivariant until the
data pays for breaking the symmetry against the prior.

How far a trained layer left the symmetry: ``||W_free|| / ||W_eq||`` (Frobenius norms of the
two expanded banks of the same shape), :meth:`ResidualPathwayConv.free_ratio`.

Parameters: the wrapped conv's (state_dict keys ``equivariant.*``) plus ``free``; the free
branch has ``|G|`` times the parameters of a p4 group conv, which :func:`zoo.match_params`
counts like any other.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.base import ExpandedConv2d
from zoo.family import ConvFamily, WrappedFamily

__all__ = ["DEFAULT_FREE_DECAY", "ResidualPathwayConv", "ResidualPathwayFamily"]

#: L2 coefficient of the free pathway's prior, ``free_decay/2 * ||W_free||^2`` in the loss.
DEFAULT_FREE_DECAY = 3.0


class ResidualPathwayConv(ExpandedConv2d):
    """``equivariant`` conv plus a zero-initialised free weight of the same expanded shape.

    ``(B, in_channels, H, W) -> (B, out_channels, H, W)``; :meth:`expand` returns
    ``(W_eq + free, bias_eq)``.

    Args:
        equivariant: the equivariant conv (its expanded bank is ``W_eq``; its parameters are
            kept under ``equivariant.*``).
        free_decay: the L2 coefficient of the free weight's prior (3; 0 turns it off).
    """

    def __init__(
        self, equivariant: ExpandedConv2d, free_decay: float = DEFAULT_FREE_DECAY
    ) -> None:
        super().__init__()
        if not free_decay >= 0:
            raise ValueError(f"free_decay must be >= 0, got {free_decay}")
        self.equivariant = equivariant
        self.kernel_size = equivariant.kernel_size
        self.in_channels = equivariant.in_channels
        self.out_channels = equivariant.out_channels
        shape = (self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)
        # zeros, not a random init then zeroed: the global RNG stream (hence every other
        # weight of a seeded model) stays that of the equivariant variant
        self.free = nn.Parameter(torch.zeros(shape))
        self.free_decay = float(free_decay)
        #: read by :func:`zoo.optim.param_groups`: the prior replaces the optimiser's decay
        self.optimizer_options = {"free": {"weight_decay": 0.0}}

    def expand(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        weight, bias = self.equivariant.expand()
        return weight + self.free, bias

    def regularisation(self) -> torch.Tensor | None:
        """The penalty ``free_decay/2 * ||W_free||^2`` (``None`` when ``free_decay`` is 0)."""
        if not self.free_decay:
            return None
        return 0.5 * self.free_decay * self.free.pow(2).sum()

    @torch.no_grad()
    def free_ratio(self) -> tuple[float, float, float]:
        """``(||W_free||, ||W_eq||, ratio)``: Frobenius norms of the two expanded banks."""
        equivariant = float(self.equivariant.expand()[0].norm())
        free = float(self.free.norm())
        return free, equivariant, free / equivariant if equivariant > 0 else float("inf")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, free_decay={self.free_decay:g}"


class ResidualPathwayFamily(WrappedFamily):
    """:class:`~zoo.family.ConvFamily` wrapper: each of ``base``'s convs plus a free pathway.

    Every other hook is ``base``'s.

    Args:
        base: a family whose convs are :class:`~zoo.base.ExpandedConv2d` (p4, p4m, SE(2,N),
            steerable).
        free_decay: the L2 coefficient of the free pathways' prior,
            ``free_decay/2 * ||W_free||^2`` in the loss (3).
    """

    options = ("free_decay",)

    def __init__(self, base: ConvFamily, free_decay: float = DEFAULT_FREE_DECAY) -> None:
        super().__init__(base)
        if not free_decay >= 0:
            raise ValueError(f"free_decay must be >= 0, got {free_decay}")
        self.free_decay = free_decay

    def _wrap(self, conv: nn.Module) -> ResidualPathwayConv:
        if not isinstance(conv, ExpandedConv2d):
            raise TypeError(f"a residual pathway needs an expanded conv, got {type(conv).__name__}")
        return ResidualPathwayConv(conv, self.free_decay)

    def lift(
        self, in_channels: int, out_fields: int, kernel_size: int | None = None
    ) -> ResidualPathwayConv:
        """``(B, in_channels, H, W) -> (B, out_fields*|G|, H, W)``."""
        return self._wrap(self.base.lift(in_channels, out_fields, kernel_size))

    def conv(
        self, in_fields: int, out_fields: int, kernel_size: int | None = None
    ) -> ResidualPathwayConv:
        """``(B, in_fields*|G|, H, W) -> (B, out_fields*|G|, H, W)``."""
        return self._wrap(self.base.conv(in_fields, out_fields, kernel_size))
