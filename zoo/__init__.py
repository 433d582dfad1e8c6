"""zoo: rotation-equivariant U-Nets behind one factory (knows nothing of datasets or files).

>>> import zoo
>>> zoo.available()
['unet', 'p4', 'p4m', 'se2n12', 'steerable', 'steerable-flip']
>>> model = zoo.create("p4", in_channels=3, out_channels=1, width=8, depth=4)
>>> zoo.describe(model, size=(256, 256))["params"]
1962401

Every variant maps ``(B, in_channels, H, W)`` (H, W divisible by ``2**depth``) to logits
``(B, out_channels, H, W)`` and, for an equivariant one, ``model(g x) = g model(x)`` for the
rotations by multiples of 90 degrees (and mirrors for ``p4m``/``steerable-flip``) exactly.
``model.export()`` gives an equivalent plain torch module; ``model.config`` rebuilds it through
:func:`from_config`. Layout and group conventions: :mod:`zoo.groups`.
"""

from __future__ import annotations

from zoo.base import ExpandedConv2d
from zoo.describe import describe, describe_variant
from zoo.family import ConvFamily
from zoo.groups import P4, P4M, TRIVIAL, Group, transform_fields, transform_image
from zoo.norm import GroupBatchNorm2d
from zoo.pooling import RotationPool, upsample2x
from zoo.registry import (
    DEFAULT_DEPTH,
    DEFAULT_FIELDS,
    DEFAULT_WIDTH,
    available,
    count_params,
    create,
    from_config,
    match_params,
    variant,
)
from zoo.rot90 import Rot90Family, Rot90GroupConv, Rot90LiftingConv
from zoo.unet import PlainFamily, UNet

__all__ = [
    "DEFAULT_DEPTH",
    "DEFAULT_FIELDS",
    "DEFAULT_WIDTH",
    "P4",
    "P4M",
    "TRIVIAL",
    "ConvFamily",
    "ExpandedConv2d",
    "Group",
    "GroupBatchNorm2d",
    "PlainFamily",
    "Rot90Family",
    "Rot90GroupConv",
    "Rot90LiftingConv",
    "RotationPool",
    "UNet",
    "available",
    "count_params",
    "create",
    "describe",
    "describe_variant",
    "from_config",
    "match_params",
    "transform_fields",
    "transform_image",
    "upsample2x",
    "variant",
]
