"""zoo.sizes: the one input-size rule (sides divisible by 2**depth) and its messages."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.sizes import check_input_size, valid_sizes


@pytest.mark.parametrize("depth", [0, 1, 2, 4, 5])
def test_the_rule_is_divisibility_by_two_to_the_depth(depth: int) -> None:
    for side in range(1, 100):
        ok = side % 2**depth == 0
        try:
            check_input_size(side, depth)
            check_input_size((side, 2**depth), depth)
        except ValueError:
            assert not ok, side
        else:
            assert ok, side


@pytest.mark.parametrize(
    "size,depth,message",
    [
        (100, 4, "input size 100 is not divisible by 2**depth = 16 (depth 4; .*e.g. 96 or 112$"),
        (8, 4, "input size 8 .*; use e.g. 16$"),
        ((30, 32), 2, "input size 30x32 is not divisible by 2**depth = 4 .* 28x32 or 32x32$"),
        (0, 4, "must be a positive integer"),
        ((32, -32), 4, "must be a positive integer"),
        (True, 4, "must be a positive integer"),
    ],
)
def test_bad_sizes_name_the_rule_and_the_nearest_sizes(size, depth, message) -> None:
    with pytest.raises(ValueError, match=message.replace("**", r"\*\*").replace("(d", r"\(d")):
        check_input_size(size, depth)


def test_the_caller_names_the_size_and_depth_is_checked() -> None:
    with pytest.raises(ValueError, match=r"^--size 20 is not divisible"):
        check_input_size(20, name="--size")  # the default depth, 4
    assert zoo.DEFAULT_DEPTH == 4
    with pytest.raises(ValueError, match="depth must be an integer >= 0"):
        check_input_size(16, -1)


def test_valid_sizes_are_the_nearest_multiples() -> None:
    assert valid_sizes(100, 4) == (96, 112)
    assert valid_sizes(96, 4) == (96,)
    assert valid_sizes(5, 3) == (8,)
    assert valid_sizes(7, 0) == (7,)


def test_every_model_checks_its_input_with_the_rule() -> None:
    model = zoo.create("unet", width=1, depth=3)
    with pytest.raises(ValueError, match="input size 20x16 is not divisible by 2\\*\\*depth = 8"):
        model(torch.zeros(1, 3, 20, 16))
