"""The discrete groups of ``zoo``: rotations ``C_N`` and roto-reflections ``D_N`` of the plane.

One place for the group math every variant shares: element indexing, composition, the action
on images (for multiples of 90 degrees: exact pixel permutations) and on *regular fields*.

Conventions (the same as e2cnn's ``Rot2dOnR2(N)`` / ``FlipRot2dOnR2(N)`` regular fields, so blocks
from either side interoperate):

* an element is a pair ``(f, r)`` meaning ``r^r f^f``: first mirror (if ``f``), then rotate by
  ``2*pi*r/N``. Its index on the group axis is ``f*N + r``, so ``C_N`` is ``0..N-1`` and the
  reflections of ``D_N`` follow as ``N..2N-1``.
* on an image ``(..., H, W)`` the rotation by ``k`` quarter turns is ``torch.rot90(x, k,
  dims=(-2, -1))`` and the mirror ``f`` is ``torch.flip(x, dims=[-1])`` (left-right; e2cnn's
  default reflection axis). ``(f, r)`` acts as mirror first, rotation second.
* a regular field ``(B, C*|G|, H, W)`` (group axis innermost, channel ``c*|G| + h``) transforms
  by moving the image and permuting the group axis by the left regular representation:
  ``(g . x)[c, h] = g(x[c, g^{-1} h])``. For a rotation by ``k`` quarter turns this is the cyclic
  shift ``torch.roll(x, k*N/4, group_axis)``: the image and the group axis turn the same way.

A field of the trivial group ``C_1`` is a plain scalar map: only the image moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

#: ``(f, r)``: mirror ``f`` in {0, 1} then rotate by ``r`` steps of ``2*pi/N``.
Element = tuple[int, int]


@dataclass(frozen=True)
class Group:
    """``C_N`` (``flip=False``) or ``D_N`` (``flip=True``): order ``N`` or ``2N``."""

    rotations: int
    flip: bool = False

    def __post_init__(self) -> None:
        if self.rotations < 1:
            raise ValueError(f"a rotation group needs N >= 1, got {self.rotations}")

    # -- elements ---------------------------------------------------------------------------
    @property
    def order(self) -> int:
        """``|G|``: the number of channels of a regular field."""
        return self.rotations * (2 if self.flip else 1)

    @property
    def name(self) -> str:
        return f"{'D' if self.flip else 'C'}{self.rotations}"

    def elements(self) -> list[Element]:
        """All elements in group-axis order."""
        return [self.element(i) for i in range(self.order)]

    def index(self, e: Element) -> int:
        """Position of element ``e`` on the group axis."""
        f, r = e
        if f and not self.flip:
            raise ValueError(f"{self.name} has no reflections")
        return f * self.rotations + r % self.rotations

    def element(self, i: int) -> Element:
        """The element at position ``i`` of the group axis."""
        return divmod(i, self.rotations)

    def compose(self, a: Element, b: Element) -> Element:
        """``a * b`` (apply ``b`` first): ``r^x f^p * r^y f^q = r^(x + (-1)^p y) f^(p+q)``."""
        (fa, ra), (fb, rb) = a, b
        return (fa + fb) % 2, (ra + (-rb if fa else rb)) % self.rotations

    def inverse(self, a: Element) -> Element:
        """``a^{-1}``: rotations invert, reflections are their own inverse."""
        f, r = a
        return (f, r) if f else (0, -r % self.rotations)

    def rotation(self, quarter_turns: int) -> Element:
        """The rotation by ``quarter_turns * 90`` degrees (needs ``4 | N``, or ``N == 1``)."""
        if self.rotations == 1:
            return (0, 0)
        if self.rotations % 4:
            raise ValueError(f"{self.name} does not contain the rotation by 90 degrees")
        return (0, quarter_turns * self.rotations // 4 % self.rotations)

    def mirror(self) -> Element:
        """The left-right mirror ``f`` (needs ``flip=True``)."""
        if not self.flip:
            raise ValueError(f"{self.name} has no reflections")
        return (1, 0)

    # -- tables -----------------------------------------------------------------------------
    def regular_permutation(self, e: Element) -> torch.Tensor:
        """``perm`` with ``(rho(e) x)[..., j] = x[..., perm[j]]``, i.e. ``perm[j] = e^{-1} j``."""
        inv = self.inverse(e)
        return torch.tensor([self.index(self.compose(inv, h)) for h in self.elements()])

    @cached_property
    def quotient_table(self) -> torch.Tensor:
        """``(|G|, |G|)`` long tensor ``[g, h] = index(g^{-1} h)``: the group-conv index."""
        return torch.stack([self.regular_permutation(g) for g in self.elements()])

    def quarter_turns(self, e: Element) -> int:
        """How many quarter turns the rotation part of ``e`` is (error if not a multiple)."""
        steps = 4 * e[1]
        if steps % self.rotations:
            raise ValueError(f"element {e} of {self.name} is not a multiple of 90 degrees")
        return steps // self.rotations

    def kernel_permutations(self, kernel_size: int) -> torch.Tensor:
        """``(|G|, k, k)`` long tensor: the flat source pixel of each element's moved kernel.

        ``psi.flatten()[perm[g]]`` is ``transform_image(psi, g)``: exact for the groups whose
        rotations are multiples of 90 degrees (``N`` in 1, 2, 4).
        """
        grid = torch.arange(kernel_size * kernel_size).view(kernel_size, kernel_size)
        return torch.stack(
            [transform_image(grid, self.quarter_turns(e), bool(e[0])) for e in self.elements()]
        )


TRIVIAL = Group(1)
P4 = Group(4)
P4M = Group(4, flip=True)


# -- actions on tensors ---------------------------------------------------------------------
def transform_image(x: torch.Tensor, quarter_turns: int = 0, flip: bool = False) -> torch.Tensor:
    """Act on the last two (spatial) axes: mirror left-right if ``flip``, then ``rot90``.

    ``(..., H, W) -> (..., H, W)`` (or ``(..., W, H)`` for an odd number of quarter turns).
    """
    if flip:
        x = torch.flip(x, dims=[-1])
    return torch.rot90(x, quarter_turns % 4, dims=(-2, -1))


def transform_fields(
    x: torch.Tensor, group: Group, quarter_turns: int = 0, flip: bool = False
) -> torch.Tensor:
    """Act on regular fields ``(B, C*|G|, H, W)`` by ``r^quarter_turns f^flip``.

    The image moves by :func:`transform_image`; the group axis is permuted by the left regular
    representation (for a rotation: ``roll`` by ``quarter_turns*N/4``). Fields of ``C_1`` are
    scalar maps: only the image moves.
    """
    if group.order == 1:
        return transform_image(x, quarter_turns, flip)
    e = group.compose(group.rotation(quarter_turns), group.mirror() if flip else (0, 0))
    perm = group.regular_permutation(e).to(x.device)
    moved = group_axis(x, group.order)[:, :, perm].reshape(x.shape)
    return transform_image(moved, quarter_turns, flip)


def group_axis(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """View ``(B, C*|G|, H, W)`` as ``(B, C, |G|, H, W)`` (the group axis made explicit)."""
    b, channels, h, w = x.shape
    if channels % group_size:
        raise ValueError(f"{channels} channels are not whole fields of size {group_size}")
    return x.reshape(b, channels // group_size, group_size, h, w)
