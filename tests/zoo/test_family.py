"""zoo.family: the whole contract between a family and the U-Net skeleton, in one class."""

from __future__ import annotations

import inspect

import pytest
import torch
from equivariance import model_errors, random_image, require_variant
from torch import nn

import zoo
from zoo.family import ConvFamily, ConvPairFamily, WrappedFamily
from zoo.groups import P4
from zoo.norm import GroupBatchNorm2d
from zoo.options import PoolMode
from zoo.pooling import RotationPool
from zoo.rot90 import Rot90GroupConv, Rot90LiftConv

#: The hooks the skeleton calls or a checker reads, besides the two convs.
HOOKS = ("norm", "activation", "downsample", "invariant_pool", "transform")


class MinimalP4(ConvFamily):
    """A new family as its author writes it: the group, a kernel size and the two convs."""

    group = P4
    kernel_size = 3

    def lift(self, in_channels: int, out_fields: int, kernel_size: int | None = None) -> nn.Module:
        return Rot90LiftConv(in_channels, out_fields, self.kernel(kernel_size), self.group)

    def conv(self, in_fields: int, out_fields: int, kernel_size: int | None = None) -> nn.Module:
        return Rot90GroupConv(in_fields, out_fields, self.kernel(kernel_size), self.group)


def test_a_family_must_give_its_two_convs() -> None:
    class NoConvs(ConvFamily):
        group = P4
        kernel_size = 3

    with pytest.raises(TypeError, match="abstract"):
        NoConvs()  # type: ignore[abstract]


def test_a_minimal_family_gets_every_default_and_an_equivariant_unet() -> None:
    family = MinimalP4()
    assert family.group_size == 4 and family.regular_fields
    assert family.pool_modes[0] == PoolMode.MAX
    assert isinstance(family.norm(3), GroupBatchNorm2d)
    assert isinstance(family.activation(3), nn.ReLU)
    assert isinstance(family.downsample(), nn.MaxPool2d)
    pool, channels = family.invariant_pool(3, PoolMode.MEAN)
    assert isinstance(pool, RotationPool) and pool.mode == "mean" and channels == 3
    torch.manual_seed(0)
    model = zoo.UNet(family, width=2, depth=2).double().eval()
    assert model.family is family and model.group == P4
    errors = model_errors(model, random_image((16, 24), torch.float64, 0), model.group)
    assert max(errors.values()) < 1e-10
    x = torch.randn(1, 8, 5, 6, dtype=torch.float64)
    assert torch.equal(family.transform(x, 1), zoo.transform_fields(x, P4, 1))


def test_the_skeleton_takes_only_a_family() -> None:
    with pytest.raises(TypeError, match=r"zoo\.family\.ConvFamily"):
        zoo.UNet(object(), width=1, depth=1)  # type: ignore[arg-type]


def test_a_wrapped_family_delegates_every_hook() -> None:
    """Every public attribute of the contract is delegated, so a hook added to ConvFamily
    without its delegation fails here."""
    declared = {n for n in dir(ConvFamily) if not n.startswith("_")} | {"group", "kernel_size"}
    assert set(HOOKS) <= declared
    own = set(vars(WrappedFamily)) | {"kernel"}  # kernel() reads the delegated kernel_size
    assert declared - {"options"} <= own, declared - own
    base = MinimalP4()
    wrapped = WrappedFamily(base)
    assert (wrapped.group, wrapped.group_size, wrapped.kernel_size) == (P4, 4, 3)
    assert wrapped.pool_modes == base.pool_modes and wrapped.regular_fields
    assert inspect.signature(wrapped.invariant_pool) == inspect.signature(base.invariant_pool)


@pytest.mark.parametrize("name", zoo.available())
def test_every_variant_is_the_skeleton_with_its_registered_family(name: str) -> None:
    require_variant(name)
    family = zoo.create_family(name)
    assert isinstance(family, ConvFamily)
    model = zoo.create(name, width=1, depth=1)
    assert isinstance(model, zoo.UNet) and type(model.family) is type(family)
    assert model.group == family.group and model.group_size == family.group_size
    default_pool = zoo.create(name, width=1, depth=1, rotation_pool=family.pool_modes[0])
    assert type(default_pool.pool) is type(model.pool)
    if family.regular_fields:
        assert family.group_size == family.group.order


def test_unknown_family_options_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="bad options for variant 'p4-rpp'"):
        zoo.create("p4-rpp", width=1, depth=1, keep_weight=0.1)  # a partial option
    model = zoo.create("p4-partial", width=1, depth=1, keep_weight=0.1, kernel_size=5)
    assert model.encoder[0][0][0].kernel_size == 5
    assert model.encoder[0][0][1].subset.keep_weight == 0.1


@pytest.mark.parametrize(
    ("variant", "prefix"),
    [("p4", "Rot90"), ("p4m", "Rot90"), ("se2n12", "SE2"), ("steerable", "Steerable"),
     ("steerable-so2", "SO2")],
)  # fmt: skip
def test_a_conv_pair_family_builds_its_named_lift_and_group_conv(variant: str, prefix: str) -> None:
    require_variant(variant)
    family = zoo.create_family(variant)
    assert isinstance(family, ConvPairFamily)
    assert (family.lift_conv.__name__, family.group_conv.__name__) == (
        f"{prefix}LiftConv",
        f"{prefix}GroupConv",
    )
    lift, conv = family.lift(3, 2), family.conv(2, 5)
    assert type(lift) is family.lift_conv and lift.lifting and not conv.lifting
    assert type(conv) is family.group_conv
    s = family.group_size
    assert (lift.in_channels, lift.out_channels) == (3, 2 * s)
    assert (conv.in_channels, conv.out_channels) == (2 * s, 5 * s)
