"""The U-Net skeleton, whole models of every registry variant.

Equivariance is checked with zoo's public :func:`zoo.check_equivariance` at its default
tolerances (relative, max-abs; :mod:`zoo.equivariance`): float32 sweeps over seeds and sizes at
1e-4 (the requirement); one float64 case per variant at 1e-10 (only rounding remains: max seen
4e-14), which tells a real error from float noise; the plain U-Net must exceed BROKEN = 1e-2.
Every element of the rot90 subgroup is checked in eval mode and in train mode (batch
statistics: the whole batch is transformed at once). Variants that cannot be built here (no
e2cnn) are skipped with the reason.
"""

from __future__ import annotations

import math

import pytest
import torch
from equivariance import (
    BROKEN,
    CASES,
    TOL32,
    TOL_MODEL64,
    equivariance_errors,
    random_image,
    relative_error,
    rot90_elements,
)

import zoo
from zoo.base import ExpandedConv2d
from zoo.equivariance import EquivarianceError
from zoo.partial import GroupSubset

VARIANTS = zoo.available()
EQUIVARIANT = [name for name in VARIANTS if name != "unet"]


F32, F64 = torch.float32, torch.float64


def _check_modes(model: torch.nn.Module, x: torch.Tensor) -> None:
    """``zoo.check_equivariance`` in eval and in train mode, over the model's rot90 subgroup.

    A partial model draws a random subset of its group per training pass (zoo.partial), so it
    is checked in eval mode only (where its subset is fixed; at init the whole group).
    """
    sampled = any(isinstance(m, GroupSubset) for m in model.modules())
    for mode in ("eval",) if sampled else ("eval", "train"):
        model.train(mode == "train")
        errors = zoo.check_equivariance(model, x)  # EquivarianceError above the tolerance
        assert len(errors) == (7 if model.group.flip else 3)


@pytest.mark.parametrize("name", EQUIVARIANT)
@pytest.mark.parametrize("seed,size", CASES)
def test_models_are_equivariant(tiny_model, name, seed, size) -> None:
    model = tiny_model(name, seed, F32)
    assert model.group.rotations % 4 == 0
    _check_modes(model, random_image(size, F32, seed))


@pytest.mark.parametrize("name", EQUIVARIANT)
def test_models_are_equivariant_in_float64(tiny_model, name) -> None:
    _check_modes(tiny_model(name, 3, F64), random_image((16, 24), F64, 3))


@pytest.mark.parametrize("name", EQUIVARIANT)
def test_fields_before_pooling_transform_and_pooled_maps_are_invariant(tiny_model, name) -> None:
    """The last fields transform by the family's own action (regular fields: the group axis
    rolls; SO(2) irreps: the vectors turn) and the pooled map is invariant."""
    model = tiny_model(name, 1, F32).eval()
    act = model.family.transform
    seen: dict[str, torch.Tensor] = {}
    model.decoder[-1].register_forward_hook(lambda m, i, o: seen.__setitem__("fields", o))
    model.pool.register_forward_hook(lambda m, i, o: seen.__setitem__("pooled", o))

    def fields(x: torch.Tensor) -> torch.Tensor:
        model(x)
        return seen["fields"]

    def pooled(x: torch.Tensor) -> torch.Tensor:
        model(x)
        return seen["pooled"]

    x = random_image((32, 32), F32, 1)
    zoo.check_equivariance(fields, x, group=model.group, out_fields=act)
    zoo.check_equivariance(pooled, x, group=model.group)
    # the fields' action the wrong way round must not pass
    wrong = act(fields(x), -1)
    rotated = fields(zoo.transform_image(x, 1))
    assert relative_error(rotated, torch.rot90(wrong, 2, dims=(-2, -1))) > BROKEN
    slipped = equivariance_errors(fields, x, None, act, [(1, False)])
    assert slipped[(1, False)] < TOL32


@pytest.mark.parametrize("seed", [0, 1])
def test_plain_unet_is_not_equivariant(tiny_model, seed) -> None:
    model = tiny_model("unet", seed, F64).eval()
    x = random_image((32, 32), F64, seed)
    errors = zoo.check_equivariance(model, x, group=zoo.P4M, tolerance=math.inf)
    assert min(errors.values()) > BROKEN, errors
    assert len(errors) == len(rot90_elements(zoo.P4M)) == 7
    with pytest.raises(EquivarianceError, match="not equivariant within 1e-10 relative"):
        zoo.check_equivariance(model, x, group=zoo.P4)


@pytest.mark.parametrize("name", VARIANTS)
def test_shapes_channels_and_config(tiny_model, name) -> None:
    model = tiny_model(name, 0, F32)
    assert model.config["variant"] == name
    for size in ((32, 32), (32, 48)):
        assert model(random_image(size, F32, 0)).shape == (2, 1, *size)
    other = zoo.create(name, in_channels=1, out_channels=2, width=1, depth=1)
    assert other(torch.randn(1, 1, 8, 6)).shape == (1, 2, 8, 6)
    rebuilt = zoo.from_config(other.config)
    shapes = {k: v.shape for k, v in other.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes


@pytest.mark.parametrize("name", VARIANTS)
def test_gradients_reach_every_parameter(tiny_model, name) -> None:
    model = tiny_model(name, 0, F32).train()
    x = random_image((16, 16), F32, 4)
    target = random_image((16, 16), F32, 5, channels=1)
    (model(x) * target).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", VARIANTS)
def test_eval_cache_is_used_and_invalidated_by_an_optimiser_step(tiny_model, name) -> None:
    model = tiny_model(name, 0, F32).eval()
    x = random_image((16, 16), F32, 5)
    convs = [m for m in model.modules() if isinstance(m, ExpandedConv2d)]
    inner = {id(c) for m in convs for c in m.children() if isinstance(c, ExpandedConv2d)}
    convs = [c for c in convs if id(c) not in inner]  # an RPP conv's equivariant part never runs
    with torch.no_grad():
        before = model(x)
        assert all(c._cache is not None for c in convs)
        assert torch.equal(model(x), before)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    model(x).square().mean().backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        after = model(x)
        assert relative_error(after, before) > 1e-3  # the step changed the eval output...
        for c in convs:  # ...through freshly expanded filters
            c._cache = None
        assert torch.equal(model(x), after)
    # an in-place weight change alone (no train()) also invalidates the cache
    if convs:
        with torch.no_grad():
            next(convs[0].parameters()).mul_(2.0)
            assert not torch.equal(model(x), after)


@pytest.mark.parametrize(
    "size,match",
    [((30, 32), "divisible by 2\\*\\*depth = 4"), ((32, 33), "divisible"), ((31, 31), "divisible")],
)
def test_bad_sizes_are_clear_errors(tiny_model, size, match) -> None:
    model = tiny_model("p4", 0, F32)
    with pytest.raises(ValueError, match=match):
        model(torch.zeros(1, 3, *size))


def test_wrong_channels_and_bad_constructor_args() -> None:
    model = zoo.create("unet", width=1, depth=1)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match="width"):
        zoo.create("p4", width=0)
    with pytest.raises(ValueError, match="in_channels"):
        zoo.create("p4", in_channels=0)


@pytest.mark.parametrize("name", VARIANTS)
def test_channels_last_input_gives_the_same_model(tiny_model, name) -> None:
    """A channels-last input takes other kernels (per-field batch norm, the upsampling adjoint)
    but computes the same function: logits in train and eval mode, every parameter gradient
    and the running statistics agree with the NCHW path to float64 rounding (1e-10)."""
    reference, model = tiny_model(name, 5, F64), tiny_model(name, 5, F64)
    x = random_image((16, 24), F64, 5)
    target = torch.rand(x.shape[0], 1, *x.shape[-2:], dtype=F64)
    outputs = []
    for net, image in ((reference, x), (model, x.contiguous(memory_format=torch.channels_last))):
        net.train()
        torch.manual_seed(7)  # the *-partial variants sample their subsets in training
        logits = net(image)
        torch.nn.functional.binary_cross_entropy_with_logits(logits, target).backward()
        net.eval()
        with torch.no_grad():
            outputs.append((logits.detach(), net(image)))
    (train_ref, eval_ref), (train_cl, eval_cl) = outputs
    assert relative_error(train_cl, train_ref) < TOL_MODEL64
    assert relative_error(eval_cl, eval_ref) < TOL_MODEL64
    # rounding is relative to the gradients' scale, not to one parameter's (a parameter whose
    # gradient is 1e-6 of the largest carries the larger ones' rounding)
    scale = max(p.grad.abs().max().item() for p in reference.parameters())
    for (key, ours), theirs in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert (ours.grad - theirs.grad).abs().max().item() / scale < TOL_MODEL64, key
    for ours, theirs in zip(model.buffers(), reference.buffers(), strict=True):
        if ours.is_floating_point() and not ours.is_sparse:  # running statistics
            assert relative_error(ours, theirs) < TOL_MODEL64
