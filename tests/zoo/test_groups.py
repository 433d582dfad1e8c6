"""zoo.groups: group axioms, the image action, and the regular-field action (the test oracle)."""

from __future__ import annotations

import itertools

import pytest
import torch
from equivariance import rot90_elements

from zoo.groups import P4, P4M, TRIVIAL, Group, group_axis, transform_fields, transform_image

GROUPS = [TRIVIAL, Group(2), P4, Group(8), Group(12), Group(1, True), P4M, Group(8, True)]


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
def test_group_axioms(group: Group) -> None:
    elements = group.elements()
    assert len(elements) == group.order == len(set(elements))
    assert [group.index(e) for e in elements] == list(range(group.order))
    e = (0, 0)
    for a in elements:
        assert group.compose(a, e) == a == group.compose(e, a)
        assert group.compose(a, group.inverse(a)) == e
    for a, b, c in itertools.product(elements, repeat=3):
        assert group.compose(group.compose(a, b), c) == group.compose(a, group.compose(b, c))


@pytest.mark.parametrize("group", [P4, P4M, Group(8, True)], ids=lambda g: g.name)
def test_regular_representation_is_a_homomorphism(group: Group) -> None:
    # rho(a) rho(b) = rho(ab) on a vector indexed by the group axis
    v = torch.arange(group.order)
    for a, b in itertools.product(group.elements(), repeat=2):
        rho_b = v[group.regular_permutation(b)]
        assert torch.equal(rho_b[group.regular_permutation(a)],
                           v[group.regular_permutation(group.compose(a, b))])  # fmt: skip


def test_image_action_composes_like_the_group() -> None:
    x = torch.arange(12.0).view(1, 1, 3, 4)
    for (ka, fa), (kb, fb) in itertools.product(rot90_elements(P4M, identity=True), repeat=2):
        f, r = P4M.compose((int(fa), ka), (int(fb), kb))
        twice = transform_image(transform_image(x, kb, fb), ka, fa)
        assert torch.equal(twice, transform_image(x, r, bool(f)))


def test_field_action_composes_like_the_group() -> None:
    x = torch.randn(2, 3 * P4M.order, 4, 6)
    for (ka, fa), (kb, fb) in itertools.product(rot90_elements(P4M, identity=True), repeat=2):
        f, r = P4M.compose((int(fa), ka), (int(fb), kb))
        twice = transform_fields(transform_fields(x, P4M, kb, fb), P4M, ka, fa)
        assert torch.equal(twice, transform_fields(x, P4M, r, bool(f)))


def test_rot90_rolls_the_group_axis_forward_by_a_quarter() -> None:
    # the convention every variant follows: image rot90 by k <-> roll by k*|G|/4, same way
    for n in (4, 8, 12):
        group = Group(n)
        x = torch.randn(2, 3 * n, 5, 5)
        for k in range(4):
            rolled = torch.roll(group_axis(x, n), k * n // 4, dims=2).reshape(x.shape)
            expected = torch.rot90(rolled, k, dims=(-2, -1))
            assert torch.equal(transform_fields(x, group, k), expected)


def test_mirror_reverses_rotations_on_the_group_axis() -> None:
    x = torch.arange(8.0).view(1, 8, 1, 1)  # one field of D4, value = group index
    # (f . x)[h] = x[f h]: reflections <-> rotations, r^k -> r^-k f
    assert transform_fields(x, P4M, 0, True).flatten().tolist() == [4, 7, 6, 5, 0, 3, 2, 1]


def test_kernel_permutations_move_kernels_like_images() -> None:
    psi = torch.randn(5, 5)
    perms = P4M.kernel_permutations(5)
    for g, (f, r) in enumerate(P4M.elements()):
        assert torch.equal(psi.flatten()[perms[g]], transform_image(psi, r, bool(f)))


def test_bad_requests_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="90 degrees"):
        Group(6).rotation(1)
    with pytest.raises(ValueError, match="no reflections"):
        P4.mirror()
    with pytest.raises(ValueError, match="multiple of 90"):
        Group(8).kernel_permutations(3)
    with pytest.raises(ValueError, match="whole fields"):
        transform_fields(torch.zeros(1, 6, 4, 4), P4, 1)
    with pytest.raises(ValueError, match="N >= 1"):
        Group(0)
