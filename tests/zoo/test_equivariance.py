"""zoo.equivariance: the public check every test and a new family's author use."""

from __future__ import annotations

import math

import pytest
import torch
from equivariance import BROKEN, build, random_image

import zoo
from zoo.equivariance import (
    TOLERANCE,
    EquivarianceError,
    check_equivariance,
    field_action,
    relative_error,
    rot90_elements,
)
from zoo.groups import P4, P4M, TRIVIAL
from zoo.rot90 import Rot90GroupConv, Rot90LiftConv


def test_elements_of_the_rot90_subgroup() -> None:
    assert rot90_elements(P4) == [(1, False), (2, False), (3, False)]
    assert len(rot90_elements(P4M)) == 7 and len(rot90_elements(P4M, identity=True)) == 8
    assert rot90_elements(TRIVIAL) == rot90_elements(P4)  # what a model of C1 is checked for


def test_a_model_is_checked_on_a_default_input_of_its_dtype_and_valid_size() -> None:
    model = build("p4", seed=0, dtype=torch.float64, depth=3).eval()
    seen: list[torch.Size] = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    errors = check_equivariance(model)  # group: model.group; tolerance: float64's
    assert set(errors) == set(rot90_elements(P4))
    assert max(errors.values()) < TOLERANCE[torch.float64]
    assert seen[0] == (2, 3, 32, 48) and {s[-2:] for s in seen} == {(32, 48), (48, 32)}
    assert not model.training  # the mode is the caller's


def test_layers_with_fields_in_and_out() -> None:
    torch.manual_seed(0)
    lift = Rot90LiftConv(3, 2, group=P4M).double()
    conv = Rot90GroupConv(2, 3, group=P4M).double()
    assert len(check_equivariance(lift, out_fields=P4M)) == 7
    x = torch.randn(1, 2 * 8, 9, 10, dtype=torch.float64)
    assert max(check_equivariance(conv, x, in_fields=P4M, out_fields=P4M).values()) < 1e-12
    # an action instead of a group: the same numbers
    act = field_action(P4M)
    assert check_equivariance(conv, x, group=P4M, in_fields=act, out_fields=act) == \
        check_equivariance(conv, x, in_fields=P4M, out_fields=P4M)  # fmt: skip


def test_a_broken_map_is_reported_above_the_tolerance() -> None:
    def slipped(x: torch.Tensor) -> torch.Tensor:
        """A "lifting" ``out[c, g] = (g + 1) x[c]`` whose group axis never rolls."""
        scale = torch.arange(1.0, 5.0).repeat(x.shape[1])
        return x.repeat_interleave(4, dim=1) * scale[None, :, None, None]

    x = random_image((8, 8), torch.float32, 0)
    errors = check_equivariance(slipped, x, group=P4, out_fields=P4, tolerance=math.inf)
    assert min(errors.values()) > BROKEN
    with pytest.raises(EquivarianceError, match=r"within 0\.0001 relative \(90 deg: "):
        check_equivariance(slipped, x, group=P4, out_fields=P4)


def test_clear_errors_for_what_the_check_cannot_guess() -> None:
    with pytest.raises(ValueError, match="pass group"):
        check_equivariance(torch.nn.Identity(), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="pass x"):
        check_equivariance(lambda x: x, group=P4)
    with pytest.raises(ValueError, match="pass tolerance"):
        check_equivariance(torch.nn.Identity(), torch.zeros(1, 1, 4, 4, dtype=torch.float16),
                           group=P4)  # fmt: skip
    half = torch.ones(1, 1, 4, 4, dtype=torch.float16)
    errors = check_equivariance(torch.nn.Identity(), half, group=P4, tolerance=0.0)
    assert errors == dict.fromkeys(rot90_elements(P4), 0.0)


def test_relative_error_is_scaled_by_the_expected_values() -> None:
    a = torch.tensor([1.0, 2.0, 4.0])
    assert relative_error(a, a) == 0.0
    assert relative_error(a + 0.4, a) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="shapes differ"):
        relative_error(a, a[:2])


def test_is_public() -> None:
    assert zoo.check_equivariance is check_equivariance and "check_equivariance" in zoo.__all__


def test_the_check_runs_in_full_float32_and_restores_the_tf32_flags() -> None:
    """TF32 (CUDA's default for convolutions) alone exceeds float32 tolerances: the check
    turns it off while it runs and restores the caller's flags, also when it fails."""
    seen: list[tuple[bool, bool]] = []

    def identity(x: torch.Tensor) -> torch.Tensor:
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return x

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        image = random_image((8, 8), torch.float32, seed=0)
        check_equivariance(identity, image, group=P4, in_fields=TRIVIAL, out_fields=TRIVIAL)
        assert seen and set(seen) == {(False, False)}
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (
            True, True)
        with pytest.raises(EquivarianceError):
            check_equivariance(lambda x: torch.roll(x, 1, dims=-1), image, group=P4,
                               in_fields=TRIVIAL, out_fields=TRIVIAL)
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
