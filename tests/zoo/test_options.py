"""zoo.options: string options as enums, one look-up with one kind of error."""

from __future__ import annotations

import json

import pytest

from zoo.options import FieldKind, PoolMode, UpsampleMode, look_up_option


def test_members_are_their_strings() -> None:
    assert PoolMode.MAX == "max" and str(UpsampleMode.NEAREST) == "nearest"
    assert json.dumps({"mode": PoolMode.MEAN}) == '{"mode": "mean"}'


def test_look_up_takes_a_member_or_its_string() -> None:
    assert look_up_option("mean", PoolMode, "rotation_pool") is PoolMode.MEAN
    assert look_up_option(FieldKind.IRREPS, FieldKind, "in_kind") is FieldKind.IRREPS


@pytest.mark.parametrize(
    "value,message",
    [
        ("bicubic", r"^upsample is 'bilinear' or 'nearest', got 'bicubic'$"),
        (None, r"got None$"),
        ("BILINEAR", r"got 'BILINEAR'$"),
    ],
)
def test_anything_else_is_one_value_error(value, message) -> None:
    with pytest.raises(ValueError, match=message):
        look_up_option(value, UpsampleMode, "upsample")


def test_a_caller_may_allow_only_some_members() -> None:
    allowed = (PoolMode.MAX, PoolMode.MEAN)
    with pytest.raises(ValueError, match=r"^rotation_pool is 'max' or 'mean', got 'norm'$"):
        look_up_option("norm", PoolMode, "rotation_pool", allowed)
    with pytest.raises(ValueError, match=r"^x is 'norm', got 'max'$"):
        look_up_option("max", PoolMode, "x", [PoolMode.NORM])
    with pytest.raises(ValueError, match="'max', 'mean' or 'norm'"):
        look_up_option("sum", PoolMode, "x")


def test_an_application_raises_its_own_error_class() -> None:
    class AppError(Exception):
        pass

    with pytest.raises(AppError, match=r"^upsample is 'bilinear' or 'nearest', got 'x'$"):
        look_up_option("x", UpsampleMode, "upsample", error=AppError)
    assert look_up_option("nearest", UpsampleMode, "u", error=AppError) is UpsampleMode.NEAREST
