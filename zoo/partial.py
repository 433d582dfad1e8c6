"""Partial equivariance: every layer learns the subset of a finite group its output lives on.

After Romero & Lohit, *Learning Partial Equivariances from Data* (NeurIPS 2022; the project's
fourth source talk, "Partial G-CNNs"). A regular group conv on a finite group ``G`` (``C_N``,
``D_N``) computes its output on *every* element ``u`` of ``G``; the talk replaces the uniform
(Haar) measure over ``G`` by a learned distribution ``p`` whose support is a subset ``S``::

    (psi * f)(u) = sum_{v in S_in} psi(v^{-1} u) f(v)       for u in S_out (p(u) > 0), else 0

A rotation ``h`` of the input shifts every field along the group axis (``g -> h g``); the mask
commutes with that shift exactly when ``h S = S``. So the network is equivariant to the elements
that map every layer's subset onto itself: to a subgroup ``H`` when every ``S`` is ``H``
(tested: ``{0, 180}`` gives exact equivariance to 180 degrees and none to 90), to all of ``G``
when every ``S = G``, and only approximately, or not at all, otherwise. A layer's output domain
is the next layer's input domain: restricting the output of layer ``l`` to ``S_l`` makes every
later sum over ``v`` run over ``S_l`` alone, exactly the Monte Carlo group conv of the talk
evaluated on the sampled elements.

Discrete groups (the talk's "Gumbel softmax trick ... a Bernoulli distribution over each group
element"): one Bernoulli per element and layer, ``p(g) = sigmoid(theta_g)``, the identity always
kept (``p(e) = 1``; with it every subset still holds the plain, non-rotated filters), i.e.
``p(e, g_1, ..., g_n) = prod_i p(g_i)``. :class:`GroupSubset` holds the logits ``theta`` and
gives a mask ``m`` on the group axis:

* training: one subset per forward pass, a relaxed Bernoulli (binary Concrete / Gumbel-sigmoid,
  Maddison et al. 2017, Jang et al. 2017) sample
  ``z_g = sigmoid((theta_g + log U - log(1 - U)) / tau)``, ``U ~ Uniform(0, 1)``; with the
  straight-through estimator (default) the forward pass uses the hard sample
  ``m_g = [z_g > 1/2]`` -- an exact ``Bernoulli(sigmoid(theta_g))`` draw, since
  ``z_g > 1/2  <=>  theta_g + logistic noise > 0`` -- and the backward pass the gradient of
  ``z_g`` (``m = hard + z - stop_gradient(z)``); without it ``m = z`` (the relaxed estimator);
* evaluation: the deterministic subset ``m_g = [p(g) > 1/2] = [theta_g > 0]``, so a trained
  model is one fixed network and ``export()`` turns it into plain convs.

Where the mask acts (:class:`SubsetNormReLU`): a U-Net layer is conv -> group batch norm ->
ReLU, all pointwise along the group axis once the norm's per-field statistics are fixed, so
restricting the conv's output to ``S`` is the same as masking the layer's output:
``y[c, g] = m_g * ReLU(GBN(x))[c, g]``. The dropped channels are then exactly zero for every
consumer: the next group conv (its sum over ``v`` runs over ``S``), the skip connection and the
rotation pooling (a max over the kept elements; the ReLU outputs are ``>= 0``). The mask comes
*after* the ReLU: the values would be the same before it (``ReLU(m y) = m ReLU(y)`` for
``m >= 0``), but the straight-through gradient of a dropped element, ``sum y dL/dy_out``,
would be cut by ``ReLU'(0) = 0``. So the partial family's norm module applies norm, ReLU and
mask, and its activation is the identity. In eval mode (``m`` in {0, 1}) the mask folds into
the per-channel affine of the exported ``BatchNorm2d`` (``weight * m``, ``bias * m``; the
ReLU of a zero is zero), exactly.

Initialisation: every ``theta_g`` starts at ``init_logit`` (> 0), the full group: an untrained
partial model in eval mode *is* its equivariant parent (p4 for ``p4-partial``), to float
rounding, and in training it drops an element with probability ``sigmoid(-init_logit)`` until
the data moves ``theta``. The logits are kept out of weight decay (decay would pull them to
``p = 1/2``, the boundary) and learn ``LOGIT_LR_SCALE`` times faster than the weights
(``optimizer_options``, read by :func:`zoo.optim.param_groups`).

Size prior (:meth:`GroupSubset.regularisation`, summed into the loss by
:func:`zoo.optim.regularisation`): ``keep_weight * sum_g (1 - p(g))``, the expected number of
dropped elements. Its pull ``keep_weight * p (1 - p)`` is weak at the full group and strongest
at the boundary ``p = 1/2``, so an element is dropped only while the data keeps paying for it.
Measured on the toy tasks of ``tests/zoo/toy_tasks.py`` (6 seeds, 250 steps): with the default
``1e-3`` the task that needs orientation dropped 1-3 of 18 elements and the rotation-invariant
one kept every element at ``p >= 0.976``; without it (``keep_weight = 0``) 1-5 and
``p >= 0.90``: the prior keeps only what the data asks for.

Shapes: ``GroupSubset(G).mask()`` is ``(|G|,)`` on the group axis (element index as in
:mod:`zoo.groups`: identity at 0); a norm over ``C`` fields maps ``(B, C*|G|, H, W)`` to the same
shape. Any family whose features are regular fields of a finite group gets partial layers from
:class:`PartialFamily`, which wraps it (``p4-partial``, ``se2n12-partial`` in the registry).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from zoo.family import ConvFamily, WrappedFamily
from zoo.groups import Group
from zoo.norm import GroupBatchNorm2d

__all__ = [
    "DEFAULT_INIT_LOGIT",
    "DEFAULT_KEEP_WEIGHT",
    "DEFAULT_TEMPERATURE",
    "LOGIT_LR_SCALE",
    "GroupSubset",
    "PartialFamily",
    "SubsetNormReLU",
    "element_names",
]

#: ``sigmoid(3) = 0.953``: the full group, each element dropped in ~5% of training passes.
DEFAULT_INIT_LOGIT = 3.0
#: Temperature ``tau`` of the relaxed Bernoulli.
DEFAULT_TEMPERATURE = 2.0 / 3.0
#: Weight of the size prior ``sum_g (1 - p(g))`` added to the loss.
DEFAULT_KEEP_WEIGHT = 1e-3
#: The logits' learning rate as a multiple of the weights' (they are few and start saturated).
LOGIT_LR_SCALE = 10.0


def element_names(group: Group) -> list[str]:
    """Readable names of the group-axis elements: ``"0°", "90°", ...`` (``"m0°"`` mirrored)."""
    step = 360.0 / group.rotations
    return [f"{'m' if f else ''}{r * step:g}°" for f, r in group.elements()]


class GroupSubset(nn.Module):
    """A learned random subset of a finite group ``G`` (identity always in it).

    Parameters: ``logits`` ``(|G| - 1,)``, ``theta_g`` of the non-identity elements in group-axis
    order (elements ``1..|G|-1``). :meth:`mask` gives ``(|G|,)``: a sample in train mode, the
    deterministic subset ``p > 1/2`` in eval mode (module docstring for the estimator);
    ``temperature`` is ``tau``, ``straight_through`` picks the estimator, ``keep_weight`` weighs
    the size prior :meth:`regularisation`.

    Args:
        group: the finite group ``G`` (``C_N`` or ``D_N``) whose subset is learned.
        init_logit: the starting logit ``theta_g`` of every non-identity element (3: the full
            group, ``p = 0.95``; finite).
        temperature: the temperature ``tau`` of the relaxed Bernoulli (2/3; positive).
        straight_through: the straight-through estimator (the hard sample forward, the relaxed
            gradient backward); ``False``: the relaxed sample both ways.
        keep_weight: the weight of the size prior ``sum_g (1 - p(g))`` in the loss (1e-3;
            0 turns it off).
    """

    def __init__(
        self,
        group: Group,
        init_logit: float = DEFAULT_INIT_LOGIT,
        temperature: float = DEFAULT_TEMPERATURE,
        straight_through: bool = True,
        keep_weight: float = DEFAULT_KEEP_WEIGHT,
    ) -> None:
        super().__init__()
        if not keep_weight >= 0:
            raise ValueError(f"keep_weight must be >= 0, got {keep_weight}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if not math.isfinite(init_logit):
            raise ValueError(f"init_logit must be finite, got {init_logit}")
        self.group = group
        self.temperature = float(temperature)
        self.straight_through = bool(straight_through)
        self.keep_weight = float(keep_weight)
        self.logits = nn.Parameter(torch.full((group.order - 1,), float(init_logit)))
        #: read by :func:`zoo.optim.param_groups`: no decay, a faster learning rate
        self.optimizer_options = {"logits": {"weight_decay": 0.0, "lr_scale": LOGIT_LR_SCALE}}

    def probabilities(self) -> torch.Tensor:
        """``(|G|,)``: ``p(g) = sigmoid(theta_g)``, ``p(e) = 1``."""
        return torch.cat([self.logits.new_ones(1), torch.sigmoid(self.logits)])

    def kept(self) -> torch.Tensor:
        """``(|G|,)`` bool: the deterministic (eval-mode) subset ``p > 1/2``, identity included."""
        return torch.cat([self.logits.new_ones(1, dtype=torch.bool), self.logits > 0])

    def sample(self) -> torch.Tensor:
        """``(|G| - 1,)``: one relaxed (or straight-through hard) sample for the non-identity."""
        u = torch.rand_like(self.logits).clamp(1e-6, 1 - 1e-6)
        z = torch.sigmoid((self.logits + torch.log(u) - torch.log1p(-u)) / self.temperature)
        if not self.straight_through:
            return z
        hard = (z > 0.5).to(z.dtype)
        return hard + (z - z.detach())  # exactly ``hard`` in the forward pass

    def mask(self) -> torch.Tensor:
        """``(|G|,)`` mask on the group axis: a sample (train) or the kept subset (eval)."""
        rest = self.sample() if self.training else (self.logits > 0).to(self.logits.dtype)
        return torch.cat([self.logits.new_ones(1), rest])

    def regularisation(self) -> torch.Tensor | None:
        """The size prior ``keep_weight * sum_g (1 - p(g))`` (``None`` when the weight is 0)."""
        if not self.keep_weight:
            return None
        return self.keep_weight * (1 - torch.sigmoid(self.logits)).sum()

    def extra_repr(self) -> str:
        mode = "straight-through" if self.straight_through else "relaxed"
        return f"{self.group.name}, tau={self.temperature:g}, {mode}"


class SubsetNormReLU(GroupBatchNorm2d):
    """Group batch norm, ReLU and the layer's learned subset: the output lives on the subset.

    ``(B, C*|G|, H, W) -> (B, C*|G|, H, W)``: ``y[c, g] = m_g * ReLU(GBN(x))[c, g]`` with ``m``
    from :attr:`subset` (a :class:`GroupSubset`). Statistics are those of
    :class:`GroupBatchNorm2d` (per field, over the batch, the whole group axis and the image).
    The state_dict is the parent's (the same keys as a p4 norm) plus ``subset.logits``.

    Args:
        num_fields: the number ``C`` of regular fields.
        group: the finite group ``G`` of the fields (``|G|`` channels each).
        affine: must be true: the eval-mode mask folds into the affine.
        **subset_options: :class:`GroupSubset`'s options.
    """

    def __init__(
        self, num_fields: int, group: Group, affine: bool = True, **subset_options: Any
    ) -> None:
        if not affine:
            raise ValueError("a subset norm needs affine=True (its mask folds into the affine)")
        super().__init__(num_fields, group.order)
        self.subset = GroupSubset(group, **subset_options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(super().forward(x))
        # channel c*|G| + g gets m_g; no view of y, so any memory format works
        m = self.subset.mask().to(y.dtype).repeat(self.num_features)
        return y * m.view(1, -1, 1, 1)

    @torch.no_grad()
    def to_plain(self) -> nn.Sequential:
        """``BatchNorm2d(C*|G|)`` with the eval-mode mask folded into its affine, then ReLU."""
        bn = self.to_batchnorm2d()
        m = self.subset.kept().to(bn.weight.dtype).repeat(self.num_features)
        bn.weight.mul_(m)
        bn.bias.mul_(m)
        return nn.Sequential(bn, nn.ReLU(inplace=True))


class PartialFamily(WrappedFamily):
    """:class:`~zoo.family.ConvFamily` wrapper: ``base``'s convs, each layer on a learned subset.

    The skeleton's norm of every layer (lift and group convs) becomes a
    :class:`SubsetNormReLU` and its activation the identity (the ReLU is inside); every other
    hook is ``base``'s.

    Args:
        base: a family of regular fields of a finite group (``base.regular_fields``: p4, p4m,
            SE(2,N), steerable), whose norm and activation are the defaults.
        **subset_options: every layer's :class:`GroupSubset` options, :attr:`options`:
            ``init_logit`` (3: the full group, ``p = 0.95``), ``temperature`` (2/3),
            ``straight_through`` (true) and ``keep_weight`` (1e-3).
    """

    options = ("init_logit", "temperature", "straight_through", "keep_weight")

    def __init__(self, base: ConvFamily, **subset_options: Any) -> None:
        super().__init__(base)
        if not base.regular_fields:
            raise ValueError(f"partial equivariance needs regular fields of a finite group: {base}")
        GroupSubset(self.group, **subset_options)  # check the options now, not at the first norm
        self.subset_options = subset_options

    def norm(self, fields: int) -> SubsetNormReLU:
        """The layer's norm and ReLU, its output restricted to the layer's learned subset."""
        return SubsetNormReLU(fields, self.group, **self.subset_options)

    def activation(self, fields: int) -> nn.Identity:
        """The identity: :meth:`norm` applies the ReLU before the subset's mask."""
        return nn.Identity()
