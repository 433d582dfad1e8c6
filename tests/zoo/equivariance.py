"""Equivariance checks shared by tests/zoo (import as ``from equivariance import ...``).

Conventions are those of :mod:`zoo.groups`: an element ``(k, flip)`` of the rot90 subgroup acts
on an image by mirror (left-right, if ``flip``) then ``torch.rot90(k, dims=(-2, -1))``, and on
regular fields ``(B, C*|G|, H, W)`` also by permuting the group axis (a rotation by ``k`` quarter
turns rolls it forward by ``k*|G_rot|/4``). A sign slip in a layer (kernel turned one way, group
axis the other) gives errors of order 1, far above the tolerances here.

Error measure: ``max|actual - expected| / max|expected|`` (relative to the output's scale).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from zoo.groups import Group, transform_fields, transform_image

#: Relative tolerance of equivariance in float32 (the project's requirement).
TOL32 = 1e-4
#: Relative tolerance in float64 for layers that are exact by construction (index permutations):
#: float64 rounding of a few hundred products is ~1e-15.
TOL64 = 1e-10
#: Relative tolerance in float64 for whole models of every variant: every variant's rot90 and
#: mirror are exact permutations (SE(2,N) snaps cos/sin, e2cnn's bases are symmetric on the
#: grid), so only float64 rounding remains (max seen 4e-14 over all variants, seeds and sizes).
TOL_MODEL64 = 1e-10
#: A non-equivariant map (the plain U-Net, a sign slip) has errors of order 1; tests require this.
BROKEN = 1e-2
#: Two different computations of the same numbers (ours against e2cnn's: another summation order,
#: another BLAS kernel; MKL picks its kernels per CPU, so they agree to rounding, not to the bit)
#: agree within these relative errors. Measured: at most 1e-7 in float32 (steerable expansions,
#: default MKL path and ``MKL_CBWR=AVX2``/``AVX512``; 0 with ``MKL_CBWR=COMPATIBLE``).
SAME = {torch.float32: 1e-6, torch.float64: 1e-12}

#: An element of the rot90 subgroup: ``(quarter_turns, flip)``.
Transform = tuple[int, bool]


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max|actual - expected| / max|expected|`` (shapes must match)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = expected.detach().abs().max().clamp_min(torch.finfo(expected.dtype).tiny)
    return float((actual.detach() - expected.detach()).abs().max() / scale)


def assert_same_numbers(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """``actual`` equals ``expected`` up to rounding: :func:`rel_error` below ``SAME[dtype]``.

    For two different computations of one result; ``torch.equal`` is kept for the same kernel
    on the same data (a permutation, a cached result).
    """
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    error = rel_error(actual, expected)
    assert error <= SAME[expected.dtype], f"relative error {error:.3g} > {SAME[expected.dtype]}"


def transforms(group: Group, identity: bool = False) -> list[Transform]:
    """The rot90 subgroup's elements: rotations by 90, 180, 270 (and mirrors if ``group.flip``)."""
    out = [(k, False) for k in range(0 if identity else 1, 4)]
    if group.flip:
        out += [(k, True) for k in range(4)]
    return out


def field_action(group: Group | None) -> Callable[[torch.Tensor, int, bool], torch.Tensor]:
    """``act(x, k, flip)``: on scalar images if ``group`` is None, else on its regular fields."""
    if group is None:
        return transform_image
    return lambda x, k, flip: transform_fields(x, group, k, flip)


def equivariance_errors(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    in_group: Group | None,
    out_group: Group | None,
    elements: list[Transform],
) -> dict[Transform, float]:
    """``{(k, flip): rel_error(f(g x), g f(x))}``; a group of None means scalar maps."""
    act_in, act_out = field_action(in_group), field_action(out_group)
    with torch.no_grad():
        y = f(x)
        return {(k, fl): rel_error(f(act_in(x, k, fl)), act_out(y, k, fl)) for k, fl in elements}


def lifting_errors(layer: nn.Module, x: torch.Tensor, group: Group) -> dict[Transform, float]:
    """Lifting layer: image ``(B, C, H, W)`` in, regular fields of ``group`` out."""
    return equivariance_errors(layer, x, None, group, transforms(group))


def group_layer_errors(layer: nn.Module, x: torch.Tensor, group: Group) -> dict[Transform, float]:
    """Group layer: regular fields of ``group`` in and out."""
    return equivariance_errors(layer, x, group, group, transforms(group))


def model_errors(model: nn.Module, x: torch.Tensor, group: Group) -> dict[Transform, float]:
    """Whole model: image in, logits out (both scalar maps), over the rot90 subgroup of ``group``.

    In train mode the whole batch is transformed at once (batch statistics are invariant).
    """
    return equivariance_errors(model, x, None, None, transforms(group))


def random_fields(
    fields: int, group: Group, size: tuple[int, int], dtype: torch.dtype, seed: int, batch: int = 2
) -> torch.Tensor:
    """A seeded random ``(batch, fields*|G|, H, W)`` field map."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, fields * group.order, *size, generator=gen, dtype=dtype)


# -- building tiny models -------------------------------------------------------------------
#: Seeds and sizes of the random inputs (sides divisible by 2**TINY["depth"]).
SEEDS = (0, 1, 2)
SIZES = ((32, 32), (32, 48), (64, 64))
#: Each seed with its own size: every seed and every size is covered at a third of the cost.
CASES = tuple(zip(SEEDS, SIZES, strict=True))
#: Tiny models keep the whole of tests/zoo within its time budget.
TINY = {"width": 2, "depth": 2}


def missing_reason(name: str) -> str | None:
    """Why variant ``name`` cannot be built here (module not written yet, no e2cnn, ...)."""
    from zoo.registry import unavailable

    return unavailable(name)


def require_variant(name: str) -> None:
    """Skip the calling test (with the reason) if variant ``name`` cannot be built here."""
    import pytest

    reason = missing_reason(name)
    if reason:
        pytest.skip(reason)


def randomize_norms(model: nn.Module, seed: int) -> nn.Module:
    """Give every batch norm random (per-field) running stats and affine parameters.

    With the defaults (mean 0, var 1, weight 1, bias 0) an eval-mode norm is the identity, and a
    per-channel norm that broke equivariance would go unnoticed.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))
    return model


def build(name: str, seed: int = 0, dtype: torch.dtype = torch.float64, **kwargs) -> nn.Module:
    """A tiny seeded ``zoo.create(name)`` in ``dtype`` with random norm statistics (or skip)."""
    import zoo

    require_variant(name)
    torch.manual_seed(seed)
    model = zoo.create(name, **{**TINY, **kwargs}).to(dtype)
    return randomize_norms(model, seed)


def random_image(
    size: tuple[int, int], dtype: torch.dtype, seed: int, channels: int = 3, batch: int = 2
) -> torch.Tensor:
    """A seeded random ``(batch, channels, H, W)`` image batch."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, *size, generator=gen, dtype=dtype)
