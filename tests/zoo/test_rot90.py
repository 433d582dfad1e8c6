"""p4 / p4m lifting and group convs: exact equivariance, the expanded bank, the eval cache.

Tolerances (relative, max-abs, see equivariance.py): TOL64 = 1e-10 in float64 (the layers are
index permutations, so only float rounding remains), TOL32 = 1e-4 in float32; a sign slip must
exceed BROKEN = 1e-2.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from equivariance import (
    BROKEN,
    CASES,
    TOL32,
    TOL64,
    group_layer_errors,
    lifting_errors,
    random_fields,
    random_image,
    relative_error,
)

from zoo.groups import P4, P4M, Group, transform_fields
from zoo.rot90 import Rot90Family, Rot90GroupConv, Rot90LiftConv

GROUPS = [P4, P4M]
ids = {"ids": lambda g: g.name}


def _layers(group: Group, seed: int, dtype: torch.dtype, k: int = 3):
    torch.manual_seed(seed)
    lift = Rot90LiftConv(3, 2, k, group, bias=True).to(dtype)
    conv = Rot90GroupConv(2, 3, k, group, bias=True).to(dtype)
    return lift, conv


@pytest.mark.parametrize("group", GROUPS, **ids)
@pytest.mark.parametrize("seed,size", CASES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, TOL64), (torch.float32, TOL32)])
def test_lifting_and_group_conv_are_equivariant(group, seed, size, dtype, tol) -> None:
    lift, conv = _layers(group, seed, dtype, k=3 if seed != 2 else 5)
    for mode in (True, False):  # train (rebuilt bank) and eval (cached bank)
        lift.train(mode), conv.train(mode)
        x = random_image(size, dtype, seed)
        errors = lifting_errors(lift, x, group)
        assert max(errors.values()) < tol, errors
        fields = random_fields(2, group, size, dtype, seed)
        errors = group_layer_errors(conv, fields, group)
        assert max(errors.values()) < tol, errors


@pytest.mark.parametrize("group", GROUPS, **ids)
def test_a_sign_slip_fails_the_check(group: Group) -> None:
    """Controls: the checks detect a kernel turned the wrong way and a group axis rolled back."""
    lift, conv = _layers(group, 0, torch.float64)
    x = random_image((32, 32), torch.float64, 0)
    fields = random_fields(2, group, (32, 32), torch.float64, 0)
    with torch.no_grad():
        # 1) group axis rolled the wrong way: compare against g^-1 acting on the fields
        y = conv(fields)
        slipped = transform_fields(y, group, -1)
        assert relative_error(conv(transform_fields(fields, group, 1)), slipped) > BROKEN
        # 2) output copy g holding the kernel moved by g^-1 (turned the wrong way): layers break
        n, kk = group.order, 9
        perms = group.kernel_permutations(3).view(n, 1, kk)
        inverse = [group.index(group.inverse(e)) for e in group.elements()]
        for layer, inp, check in ((lift, x, lifting_errors), (conv, fields, group_layer_errors)):
            good = layer.index.clone()
            base = good.view(n, -1, kk) - perms
            layer.index.copy_((base + perms[inverse]).view(-1))
            assert max(check(layer, inp, group).values()) > BROKEN
            layer.index.copy_(good)
            assert max(check(layer, inp, group).values()) < TOL64


def _naive_p4_group_bank(weight: torch.Tensor) -> torch.Tensor:
    """``W[o, g, i, h] = rot90(psi[o, i, (h - g) mod 4], g)``, written with loops."""
    out_f, in_f, n, k, _ = weight.shape
    bank = torch.empty(out_f, n, in_f, n, k, k, dtype=weight.dtype)
    for g in range(n):
        for h in range(n):
            bank[:, g, :, h] = torch.rot90(weight[:, :, (h - g) % n], g, dims=(-2, -1))
    return bank.reshape(out_f * n, in_f * n, k, k)


def test_expanded_bank_matches_a_naive_construction() -> None:
    torch.manual_seed(0)
    lift = Rot90LiftConv(3, 4, 5, P4)
    conv = Rot90GroupConv(3, 4, 5, P4)
    weight, bias = lift.expand()
    naive = torch.stack([torch.rot90(lift.weight, g, dims=(-2, -1)) for g in range(4)], dim=1)
    assert bias is None
    assert torch.equal(weight, naive.reshape(16, 3, 5, 5))
    assert torch.equal(conv.expand()[0], _naive_p4_group_bank(conv.weight))
    # the cost is that of one dense conv of the expanded shape
    assert conv.expand()[0].shape == (16, 12, 5, 5) and conv.weight.numel() == 4 * 3 * 4 * 25


def test_bias_is_per_field() -> None:
    conv = Rot90GroupConv(2, 3, 3, P4M, bias=True)
    _, bias = conv.expand()
    assert bias is not None and bias.shape == (24,)
    assert torch.equal(bias.view(3, 8), conv.bias[:, None].expand(3, 8))


def test_to_conv2d_parity_and_gradients() -> None:
    torch.manual_seed(1)
    conv = Rot90GroupConv(2, 3, 3, P4M, bias=True).double()
    x = random_fields(2, P4M, (16, 24), torch.float64, 1)
    dense = conv.to_conv2d()
    assert isinstance(dense, torch.nn.Conv2d)
    assert relative_error(dense(x), conv(x)) < TOL64
    conv(x).square().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().min() > 0
    assert conv.bias.grad is not None and conv.bias.grad.abs().min() > 0


def test_eval_cache_reused_and_invalidated_by_an_optimiser_step() -> None:
    torch.manual_seed(2)
    conv = Rot90GroupConv(2, 2, 3, P4).eval()
    x = random_fields(2, P4, (16, 16), torch.float32, 2)
    with torch.no_grad():
        before = conv(x)
        cached = conv._cache[0]
        conv(x)
        assert conv._cache[0] is cached  # reused, not rebuilt
    opt = torch.optim.SGD(conv.parameters(), lr=0.1)
    conv.train()
    conv(x).sum().backward()
    opt.step()
    conv.eval()
    with torch.no_grad():
        after = conv(x)
    assert relative_error(after, before) > BROKEN
    weight, _ = conv.expand()
    assert torch.allclose(after, F.conv2d(x, weight, padding=1))


def test_family_follows_the_protocol() -> None:
    from zoo.family import ConvFamily

    for flip, n in ((False, 4), (True, 8)):
        fam = Rot90Family(flip=flip)
        assert isinstance(fam, ConvFamily) and fam.group_size == n
        assert fam.lift(3, 2)(torch.zeros(1, 3, 8, 8)).shape == (1, 2 * n, 8, 8)
        assert fam.conv(2, 5)(torch.zeros(1, 2 * n, 8, 8)).shape == (1, 5 * n, 8, 8)
    assert Rot90Family(kernel_size=5).conv(1, 1).kernel_size == 5


def test_even_kernels_are_refused() -> None:
    with pytest.raises(ValueError, match="odd kernel"):
        Rot90GroupConv(2, 2, 4)
    with pytest.raises(ValueError, match="odd kernel"):
        Rot90Family(kernel_size=2)
