"""Partial equivariance (zoo.partial): learned subsets of the group, p4-partial, se2n12-partial.

Tolerances are equivariance.py's: TOL32 = 1e-4 (float32), TOL_MODEL64 = 1e-10 (float64, where
only rounding remains), BROKEN = 1e-2 for a symmetry that must not hold; export parity 1e-5.
"""

from __future__ import annotations

import pytest
import torch
from equivariance import (
    BROKEN,
    TINY,
    TOL32,
    TOL_MODEL64,
    build,
    model_errors,
    random_image,
    relative_error,
)

import zoo
from zoo.groups import P4, Group
from zoo.partial import GroupSubset, SubsetNormReLU, element_names

F32, F64 = torch.float32, torch.float64
TOL = {F32: TOL32, F64: TOL_MODEL64}
PAIRS = [("p4-partial", "p4"), ("se2n12-partial", "se2n12")]


def _subsets(model: torch.nn.Module) -> list[GroupSubset]:
    return [m for m in model.modules() if isinstance(m, GroupSubset)]


def _set_logits(model: torch.nn.Module, logits: list[float]) -> torch.nn.Module:
    """Every layer's non-identity logits set to ``logits`` (positive: kept in eval mode), and
    the head's bias to 0: relative errors then measure the part of the output that depends on
    the image (a tiny untrained U-Net's logits are mostly that bias)."""
    with torch.no_grad():
        model.head.bias.zero_()
        for subset in _subsets(model):
            subset.logits.copy_(torch.tensor(logits))
    return model


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("name,parent", PAIRS)
def test_untrained_partial_model_is_its_parent(name, parent, dtype) -> None:
    """Same seed, same weights: the output is the parent's, and as equivariant as the parent."""
    partial, equivariant = build(name, 0, dtype).eval(), build(parent, 0, dtype).eval()
    x = random_image((16, 24), dtype, 0)
    with torch.no_grad():
        assert relative_error(partial(x), equivariant(x)) < TOL[dtype]
    errors = model_errors(partial, x, partial.group)
    assert max(errors.values()) < TOL[dtype], errors
    # its state_dict is the parent's plus one subset per layer: a p4 checkpoint loads into it
    keys, parent_keys = set(partial.state_dict()), set(equivariant.state_dict())
    extra = keys - parent_keys
    assert parent_keys < keys and all(k.endswith(".subset.logits") for k in extra)
    assert len(extra) == 4 * TINY["depth"] + 2  # one per conv layer of the U-Net


def test_mask_keeps_the_identity_and_samples_bernoullis() -> None:
    torch.manual_seed(0)
    subset = GroupSubset(P4, init_logit=0.0)  # p = 1/2 for 90, 180 and 270 degrees
    subset.train()
    draws = torch.stack([subset.mask() for _ in range(4000)])
    assert set(draws.unique().tolist()) == {0.0, 1.0}  # straight-through: hard in the forward
    assert torch.all(draws[:, 0] == 1)
    # 12000 Bernoulli(1/2) draws: standard error 0.0046, so 0.03 is over 6 of them
    assert abs(float(draws[:, 1:].detach().mean()) - 0.5) < 0.03
    with torch.no_grad():
        subset.logits.copy_(torch.tensor([-1.0, 2.0, 0.5]))
    subset.eval()
    assert subset.mask().tolist() == [1.0, 0.0, 1.0, 1.0] == subset.kept().float().tolist()
    assert subset.probabilities()[0] == 1 and subset.probabilities()[1] < 0.5


def test_relaxed_estimator_gives_soft_masks_and_both_give_gradients() -> None:
    torch.manual_seed(1)
    for straight_through in (True, False):
        subset = GroupSubset(P4, init_logit=0.0, straight_through=straight_through).train()
        mask = subset.mask()
        soft = bool(((mask > 0) & (mask < 1)).any())
        assert soft != straight_through
        (mask * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
        assert subset.logits.grad is not None and torch.all(subset.logits.grad > 0)


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="temperature"):
        zoo.create("p4-partial", width=1, depth=1, temperature=0.0)
    with pytest.raises(ValueError, match="keep_weight"):
        zoo.create("p4-partial", width=1, depth=1, keep_weight=-1.0)
    with pytest.raises(ValueError, match="bad options"):
        zoo.create("p4-partial", width=1, depth=1, colour="blue")
    model = zoo.create("p4-partial", width=1, depth=1, init_logit=5.0, temperature=0.5,
                       straight_through=False, keep_weight=0.0)  # fmt: skip
    subset = _subsets(model)[0]
    assert (subset.temperature, subset.straight_through, subset.keep_weight) == (0.5, False, 0.0)
    assert torch.all(subset.logits == 5.0)
    assert zoo.from_config(model.config).config == model.config


def test_dropped_elements_get_gradients_in_training() -> None:
    """Straight-through: a layer's dropped element still tells its logit whether to come back."""
    model = _set_logits(build("p4-partial", 0, F32), [-3.0, 3.0, 3.0]).train()
    x, target = random_image((16, 16), F32, 1), random_image((16, 16), F32, 2, channels=1)
    (model(x) * target).sum().backward()
    for subset in _subsets(model):
        assert torch.all(subset.logits.grad != 0)


def test_a_subgroup_subset_keeps_exactly_that_subgroup() -> None:
    """Subset {0, 180} = C2 in every layer: equivariant to 180 degrees, not to 90 or 270.

    (Seed 1: at width 2 some seeds' random norms leave a layer all zero, a constant output.)
    """
    model = _set_logits(build("p4-partial", 1, F64), [-2.0, 2.0, -2.0]).eval()
    errors = model_errors(model, random_image((16, 16), F64, 1), model.group)
    assert errors[(2, False)] < TOL_MODEL64, errors
    assert errors[(1, False)] > BROKEN and errors[(3, False)] > BROKEN, errors


def test_eval_is_deterministic_and_the_state_dict_does_not_depend_on_the_mode() -> None:
    model = _set_logits(build("p4-partial", 3, F32), [-1.0, 2.0, 1.0])
    x = random_image((16, 16), F32, 3)
    train_state = {k: v.clone() for k, v in model.train().state_dict().items()}
    model.eval()
    assert train_state.keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in train_state.items())
    with torch.no_grad():
        first, second = model(x), model(x)
    assert torch.equal(first, second)
    model.train()
    with torch.no_grad():  # training draws subsets: two passes differ (a 5% chance per draw)
        outputs = [model(x) for _ in range(4)]
    assert any(relative_error(a, outputs[0]) > BROKEN for a in outputs[1:])


@pytest.mark.parametrize("name", [name for name, _ in PAIRS])
def test_export_folds_the_subset_into_plain_batch_norms(name) -> None:
    model = build(name, 4, F32)
    group = model.group
    _set_logits(model, [(-1.0) ** g for g in range(1, group.order)])  # drop every odd element
    exported = model.export()
    x = random_image((16, 16), F32, 4)
    with torch.no_grad():
        assert relative_error(exported(x), model.eval()(x)) < 1e-5
    norms = [m for key, m in exported.named_modules()
             if isinstance(m, torch.nn.BatchNorm2d) and key != "pool_norm"]  # the head norm
    assert len(norms) == len(_subsets(model))
    for bn in norms:
        dropped = bn.weight.view(-1, group.order)[:, 1::2]
        assert torch.all(dropped == 0) and torch.all(bn.bias.view(-1, group.order)[:, 1::2] == 0)
        assert torch.all(bn.weight.view(-1, group.order)[:, 0::2] != 0)


def test_subset_norm_needs_affine_and_family_needs_regular_fields() -> None:
    with pytest.raises(ValueError, match="affine"):
        SubsetNormReLU(2, P4, affine=False)
    from zoo.partial import PartialFamily
    from zoo.plain import PlainFamily

    class NotRegular(PlainFamily):
        regular_fields = False

    with pytest.raises(ValueError, match="regular fields"):
        PartialFamily(NotRegular())
    with pytest.raises(TypeError, match="needs a ConvFamily"):
        PartialFamily(object())  # type: ignore[arg-type]


def test_element_names() -> None:
    assert element_names(P4) == ["0°", "90°", "180°", "270°"]
    assert element_names(Group(12))[1] == "30°"
    assert element_names(Group(4, flip=True))[4:6] == ["m0°", "m90°"]
