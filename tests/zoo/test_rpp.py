"""Residual pathway priors (zoo.rpp): p4-rpp = p4 convs plus free convs held back by an L2 prior.

Tolerances are equivariance.py's: TOL32 = 1e-4 (float32), TOL_MODEL64 = 1e-10 (float64),
BROKEN = 1e-2 for a symmetry that must not hold; export parity 1e-5.
"""

from __future__ import annotations

import pytest
import torch
from equivariance import (
    BROKEN,
    TOL32,
    TOL_MODEL64,
    build,
    model_errors,
    random_image,
    relative_error,
)

import zoo
from zoo.rpp import ResidualPathwayConv, ResidualPathwayFamily

F32, F64 = torch.float32, torch.float64
TOL = {F32: TOL32, F64: TOL_MODEL64}


def _pathways(model: torch.nn.Module) -> list[ResidualPathwayConv]:
    return [m for m in model.modules() if isinstance(m, ResidualPathwayConv)]


def _perturb(model: torch.nn.Module, scale: float, seed: int) -> torch.nn.Module:
    """Give every free pathway random weights of ``scale`` times its equivariant bank's size."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in _pathways(model):
            noise = torch.randn(conv.free.shape, generator=gen, dtype=conv.free.dtype)
            conv.free.copy_(noise * scale * conv.equivariant.expand()[0].std())
    return model


@pytest.mark.parametrize("dtype", [F32, F64])
def test_untrained_rpp_model_is_p4(dtype) -> None:
    """Free pathways at zero and the same seed: p4's weights, p4's output, p4's equivariance."""
    rpp, p4 = build("p4-rpp", 0, dtype).eval(), build("p4", 0, dtype).eval()
    assert all(torch.all(conv.free == 0) for conv in _pathways(rpp))
    x = random_image((16, 24), dtype, 0)
    with torch.no_grad():
        assert relative_error(rpp(x), p4(x)) < TOL[dtype]
    errors = model_errors(rpp, x, rpp.group)
    assert max(errors.values()) < TOL[dtype], errors
    assert {conv.free_ratio()[2] for conv in _pathways(rpp)} == {0.0}


def test_a_free_pathway_breaks_the_symmetry_and_exports() -> None:
    model = _perturb(build("p4-rpp", 1, F32), 0.3, 1).eval()
    x = random_image((16, 16), F32, 1)
    errors = model_errors(model, x, model.group)
    assert min(errors.values()) > BROKEN, errors
    exported = model.export()
    with torch.no_grad():
        assert relative_error(exported(x), model(x)) < 1e-5
        first, second = model(x), model(x)
    assert torch.equal(first, second)  # evaluation is deterministic
    ratios = [conv.free_ratio()[2] for conv in _pathways(model)]
    assert all(0.2 < r < 0.4 for r in ratios), ratios  # 0.3 of the bank's std per weight


def test_prior_is_half_the_decay_times_the_squared_norm() -> None:
    model = _perturb(zoo.create("p4-rpp", width=1, depth=1, free_decay=2.0), 1.0, 2)
    conv = _pathways(model)[0]
    assert torch.allclose(conv.regularisation(), conv.free.square().sum())
    assert zoo.create("p4-rpp", width=1, depth=1, free_decay=0.0).encoder[0][0][0] \
        .regularisation() is None  # fmt: skip
    with pytest.raises(ValueError, match="free_decay"):
        zoo.create("p4-rpp", width=1, depth=1, free_decay=-1.0)


def test_state_dict_is_the_same_in_train_and_eval_mode() -> None:
    model = _perturb(build("p4-rpp", 3, F32), 0.1, 3)
    train_state = dict(model.train().state_dict())
    eval_state = dict(model.eval().state_dict())
    assert train_state.keys() == eval_state.keys()
    assert all(torch.equal(v, eval_state[k]) for k, v in train_state.items())
    assert sum(k.endswith(".free") for k in train_state) == len(_pathways(model))


def test_family_needs_expanded_convs() -> None:
    from zoo.plain import PlainFamily

    with pytest.raises(TypeError, match="expanded conv"):
        ResidualPathwayFamily(PlainFamily()).conv(1, 1)
