"""Group batch norm, rotation pooling and the resampling ops of the skeleton.

Tolerances (relative, max-abs): TOL64 = 1e-10 in float64; a broken layer exceeds BROKEN = 1e-2.
"""

from __future__ import annotations

import pytest
import torch
from equivariance import (
    BROKEN,
    CASES,
    TOL64,
    equivariance_errors,
    group_layer_errors,
    random_fields,
    randomize_norms,
    rel_error,
    transforms,
)
from torch import nn

from zoo.groups import P4, P4M, Group, group_axis
from zoo.norm import GroupBatchNorm2d
from zoo.pooling import RotationPool, upsample2x

GROUPS = [P4, P4M]
ids = {"ids": lambda g: g.name}
F64 = torch.float64


def test_group_size_one_is_batchnorm2d() -> None:
    torch.manual_seed(0)
    ours, ref = GroupBatchNorm2d(5, 1).double(), nn.BatchNorm2d(5).double()
    ref.load_state_dict(randomize_norms(ours, 0).state_dict())
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(4, 5, 6, 8, dtype=F64)
    for mode in (True, False):
        ours.train(mode), ref.train(mode)
        assert torch.equal(ours(x), ref(x))
    assert torch.allclose(ours.running_mean, ref.running_mean)
    assert torch.allclose(ours.running_var, ref.running_var)


@pytest.mark.parametrize("group", GROUPS, **ids)
def test_statistics_and_affine_are_per_field(group: Group) -> None:
    n = group.order
    bn = GroupBatchNorm2d(3, n).double()
    assert bn.weight.shape == bn.running_mean.shape == (3,)
    x = random_fields(3, group, (8, 12), F64, 0) * 3 + 1
    y = group_axis(bn(x), n)  # train mode: batch statistics over (B, |G|, H, W) per field
    assert torch.allclose(y.mean(dim=(0, 2, 3, 4)), torch.zeros(3, dtype=F64), atol=1e-12)
    var = y.var(dim=(0, 2, 3, 4), unbiased=False)
    assert torch.allclose(var, torch.ones(3, dtype=F64), atol=1e-4)
    expected = group_axis(x, n).mean(dim=(0, 2, 3, 4)) * bn.momentum
    assert torch.allclose(bn.running_mean, expected)


@pytest.mark.parametrize("group", GROUPS, **ids)
@pytest.mark.parametrize("seed,size", CASES)
def test_group_batchnorm_is_equivariant(group: Group, seed: int, size) -> None:
    bn = randomize_norms(GroupBatchNorm2d(3, group.order).double(), seed)
    x = random_fields(3, group, size, F64, seed)
    for mode in (True, False):  # train mode: the whole batch is transformed
        bn.train(mode)
        assert max(group_layer_errors(bn, x, group).values()) < TOL64


def test_per_channel_batchnorm_is_not_equivariant() -> None:
    """Control: the check tells per-field from per-channel statistics and affine parameters."""
    bn = randomize_norms(nn.BatchNorm2d(3 * 4).double(), 0)
    x = random_fields(3, P4, (16, 16), F64, 0)
    for mode in (True, False):
        bn.train(mode)
        assert max(group_layer_errors(bn, x, P4).values()) > BROKEN


@pytest.mark.parametrize("group", GROUPS, **ids)
def test_to_batchnorm2d_matches_in_eval_mode(group: Group) -> None:
    bn = randomize_norms(GroupBatchNorm2d(3, group.order).double(), 1).eval()
    plain = bn.to_batchnorm2d().eval()
    assert type(plain) is nn.BatchNorm2d and plain.num_features == 3 * group.order
    x = random_fields(3, group, (8, 8), F64, 1)
    assert rel_error(plain(x), bn(x)) < TOL64


@pytest.mark.parametrize("group", GROUPS, **ids)
@pytest.mark.parametrize("mode", ["max", "mean"])
def test_rotation_pooling_is_invariant(group: Group, mode: str) -> None:
    pool = RotationPool(group.order, mode)
    x = random_fields(3, group, (16, 24), F64, 2)
    assert pool(x).shape == (2, 3, 16, 24)
    errors = equivariance_errors(pool, x, group, None, transforms(group))
    assert max(errors.values()) < TOL64
    reduce = torch.amax if mode == "max" else torch.mean
    assert torch.equal(pool(x), reduce(group_axis(x, group.order), 2))


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_upsampling_commutes_with_rot90_and_mirror(mode: str) -> None:
    up = upsample2x(mode)
    x = torch.randn(2, 3, 6, 10, dtype=F64)
    assert up(x).shape == (2, 3, 12, 20)
    assert max(equivariance_errors(up, x, None, None, transforms(P4M)).values()) < TOL64


def test_maxpool_commutes_on_even_sides_only() -> None:
    pool = nn.MaxPool2d(2)
    even, odd = torch.randn(1, 2, 8, 12, dtype=F64), torch.randn(1, 2, 9, 9, dtype=F64)
    assert max(equivariance_errors(pool, even, None, None, transforms(P4M)).values()) == 0
    assert max(equivariance_errors(pool, odd, None, None, transforms(P4)).values()) > BROKEN


def test_bad_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="'max' or 'mean'"):
        RotationPool(4, "min")
    with pytest.raises(ValueError, match="'bilinear' or 'nearest'"):
        upsample2x("bicubic")
