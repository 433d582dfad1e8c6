"""Group batch norm, rotation pooling and the resampling ops of the skeleton.

Tolerances (relative, max-abs): TOL64 = 1e-10 in float64; a broken layer exceeds BROKEN = 1e-2.
"""

from __future__ import annotations

import copy

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
    relative_error,
    rot90_elements,
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
    assert relative_error(plain(x), bn(x)) < TOL64


@pytest.mark.parametrize("group", GROUPS, **ids)
@pytest.mark.parametrize("mode", ["max", "mean"])
def test_rotation_pooling_is_invariant(group: Group, mode: str) -> None:
    pool = RotationPool(group.order, mode)
    x = random_fields(3, group, (16, 24), F64, 2)
    assert pool(x).shape == (2, 3, 16, 24)
    errors = equivariance_errors(pool, x, group, None, rot90_elements(group))
    assert max(errors.values()) < TOL64
    reduce = torch.amax if mode == "max" else torch.mean
    assert torch.equal(pool(x), reduce(group_axis(x, group.order), 2))


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_upsampling_commutes_with_rot90_and_mirror(mode: str) -> None:
    up = upsample2x(mode)
    x = torch.randn(2, 3, 6, 10, dtype=F64)
    assert up(x).shape == (2, 3, 12, 20)
    assert max(equivariance_errors(up, x, None, None, rot90_elements(P4M)).values()) < TOL64


def test_maxpool_commutes_on_even_sides_only() -> None:
    pool = nn.MaxPool2d(2)
    even, odd = torch.randn(1, 2, 8, 12, dtype=F64), torch.randn(1, 2, 9, 9, dtype=F64)
    assert max(equivariance_errors(pool, even, None, None, rot90_elements(P4M)).values()) == 0
    assert max(equivariance_errors(pool, odd, None, None, rot90_elements(P4)).values()) > BROKEN


def test_bad_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="'max' or 'mean'"):
        RotationPool(4, "min")
    with pytest.raises(ValueError, match="'bilinear' or 'nearest'"):
        upsample2x("bicubic")


# -- the channels-last computation (zoo.norm.field_batch_norm) -------------------------------
CL = torch.channels_last


def _run_both(bn_options: dict, dtype: torch.dtype, seed: int, train: bool) -> dict:
    """The same GroupBatchNorm2d on an NCHW and a channels-last copy of one input: outputs,
    input/parameter gradients and running statistics of each, after two steps."""
    torch.manual_seed(seed)
    reference = GroupBatchNorm2d(3, 4, **bn_options).to(dtype)
    with torch.no_grad():  # values away from the defaults (some are None by the options)
        for value in (*reference.parameters(), reference.running_mean, reference.running_var):
            if value is not None:
                value.copy_(0.5 + torch.rand(value.shape, dtype=dtype))
    results = {}
    for layout in ("nchw", "cl"):
        bn = copy.deepcopy(reference).train(train)
        torch.manual_seed(seed + 1)
        outs, grads = [], []
        for _ in range(2):
            x = (torch.randn(2, 12, 6, 10, dtype=dtype) * 3 + 1)
            x = x.contiguous(memory_format=CL) if layout == "cl" else x
            x.requires_grad_(True)
            y = bn(x)
            assert y.is_contiguous(memory_format=CL if layout == "cl" else torch.contiguous_format)
            y.backward(torch.randn(y.shape, dtype=dtype).contiguous(memory_format=CL))
            outs.append(y.detach())
            grads.append(x.grad)
        params = [p.grad for p in bn.parameters()]
        results[layout] = (outs, grads, params, [b.clone() for b in bn.buffers()])
    return results


@pytest.mark.parametrize("dtype,tol", [(F64, TOL64), (torch.float32, 1e-5)], ids=["f64", "f32"])
@pytest.mark.parametrize(
    "options",
    [{}, {"momentum": None}, {"affine": False}, {"track_running_stats": False}],
    ids=["default", "cumulative", "no-affine", "untracked"],
)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_channels_last_path_equals_the_reshape_path(
    options: dict, dtype: torch.dtype, tol: float, train: bool
) -> None:
    """Outputs, gradients (input, weight, bias) and running statistics agree within rounding."""
    results = _run_both(options, dtype, 3, train)
    for ours, ref in zip(results["cl"], results["nchw"], strict=True):
        for a, b in zip(ours, ref, strict=True):
            assert a.shape == b.shape
            if a.is_floating_point():
                assert relative_error(a, b) < tol
            else:  # num_batches_tracked
                assert torch.equal(a, b)


@pytest.mark.parametrize("group", GROUPS, **ids)
def test_channels_last_path_is_equivariant(group: Group) -> None:
    bn = randomize_norms(GroupBatchNorm2d(3, group.order).double(), 4)
    x = random_fields(3, group, (8, 12), F64, 4).contiguous(memory_format=CL)
    for mode in (True, False):
        bn.train(mode)
        assert max(group_layer_errors(bn, x, group).values()) < TOL64


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 8, 1, 1), (2, 4, 6, 2)])
def test_bilinear_adjoint_is_torchs_backward(shape) -> None:
    """The channels-last backward of BilinearUpsample2x equals torch's, borders included."""
    up = upsample2x("bilinear")
    x = torch.randn(shape, dtype=F64).contiguous(memory_format=CL).requires_grad_(True)
    y = up(x)
    grad = torch.randn(y.shape, dtype=F64)
    y.backward(grad)
    reference = x.detach().contiguous().requires_grad_(True)
    nn.functional.interpolate(reference, scale_factor=2, mode="bilinear", align_corners=False
                              ).backward(grad)
    assert y.grad_fn is not None and "Bilinear" in type(y.grad_fn).__name__
    assert relative_error(x.grad, reference.grad) < TOL64
    assert torch.equal(y, nn.functional.interpolate(reference.detach(), scale_factor=2,
                                                    mode="bilinear", align_corners=False))
