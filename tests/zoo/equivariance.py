"""Checks and builders shared by tests/zoo (import as ``from equivariance import ...``).

The equivariance check itself is zoo's public :func:`zoo.check_equivariance` (conventions,
error measure and tolerances: :mod:`zoo.equivariance`); this module names the three ways the
tests measure it (a lifting layer, a group layer, a whole model) and builds tiny seeded models
and inputs. A sign slip in a layer (kernel turned one way, group axis the other) gives errors
of order 1, far above the tolerances here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from zoo.equivariance import (
    TOLERANCE,
    Transform,
    check_equivariance,
    equivariance_errors,
    relative_error,
    rot90_elements,
)
from zoo.groups import Group

__all__ = [
    "BROKEN",
    "CASES",
    "SAME",
    "SEEDS",
    "SIZES",
    "TINY",
    "TOL32",
    "TOL64",
    "TOL_MODEL64",
    "assert_same_numbers",
    "build",
    "equivariance_errors",
    "group_layer_errors",
    "lifting_errors",
    "missing_reason",
    "model_errors",
    "random_fields",
    "random_image",
    "randomize_norms",
    "relative_error",
    "require_variant",
    "rot90_elements",
]

#: Relative tolerance of equivariance in float32 (the project's requirement; zoo's default).
TOL32 = TOLERANCE[torch.float32]
#: Relative tolerance in float64 for layers that are exact by construction (index permutations):
#: float64 rounding of a few hundred products is ~1e-15.
TOL64 = 1e-10
#: Relative tolerance in float64 for whole models of every variant (zoo's default): every
#: variant's rot90 and mirror are exact permutations (SE(2,N) snaps cos/sin, e2cnn's bases are
#: symmetric on the grid), so only float64 rounding remains (max seen 4e-14 over all variants,
#: seeds and sizes).
TOL_MODEL64 = TOLERANCE[torch.float64]
#: A non-equivariant map (the plain U-Net, a sign slip) has errors of order 1; tests require this.
BROKEN = 1e-2
#: Two different computations of the same numbers (ours against e2cnn's: another summation order,
#: another BLAS kernel; MKL picks its kernels per CPU, so they agree to rounding, not to the bit)
#: agree within these relative errors. Measured: at most 1e-7 in float32 (steerable expansions,
#: default MKL path and ``MKL_CBWR=AVX2``/``AVX512``; 0 with ``MKL_CBWR=COMPATIBLE``).
SAME = {torch.float32: 1e-6, torch.float64: 1e-12}


def assert_same_numbers(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """``actual`` equals ``expected`` up to rounding: :func:`relative_error` below
    ``SAME[dtype]``.

    For two different computations of one result; ``torch.equal`` is kept for the same kernel
    on the same data (a permutation, a cached result).
    """
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    error = relative_error(actual, expected)
    assert error <= SAME[expected.dtype], f"relative error {error:.3g} > {SAME[expected.dtype]}"


def lifting_errors(layer: nn.Module, x: torch.Tensor, group: Group) -> dict[Transform, float]:
    """Lifting layer: image ``(B, C, H, W)`` in, regular fields of ``group`` out (measured)."""
    return check_equivariance(layer, x, out_fields=group, tolerance=math.inf)


def group_layer_errors(layer: nn.Module, x: torch.Tensor, group: Group) -> dict[Transform, float]:
    """Group layer: regular fields of ``group`` in and out (measured)."""
    return check_equivariance(layer, x, in_fields=group, out_fields=group, tolerance=math.inf)


def model_errors(model: nn.Module, x: torch.Tensor, group: Group) -> dict[Transform, float]:
    """Whole model: image in, logits out (both scalar maps), over the rot90 subgroup of ``group``
    (measured). In train mode the whole batch is transformed at once (batch statistics are
    invariant)."""
    return check_equivariance(model, x, group=group, tolerance=math.inf)


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
    """Why variant ``name`` cannot be built here (e.g. no e2cnn), or ``None``."""
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
