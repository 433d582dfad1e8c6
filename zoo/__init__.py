"""zoo: rotation-equivariant U-Nets behind one factory (knows nothing of datasets or files).

>>> import zoo
>>> zoo.available()  # every registered variant  # doctest: +NORMALIZE_WHITESPACE
['unet', 'p4', 'p4m', 'se2n12', 'steerable', 'steerable-flip', 'steerable-so2',
 'p4-partial', 'se2n12-partial', 'p4-rpp']
>>> model = zoo.create("p4", in_channels=3, out_channels=1, width=8, depth=4)
>>> zoo.describe(model, size=(256, 256))["params"]
1962417
>>> sorted(zoo.check_equivariance(model.double().eval()))  # rotations by 90, 180, 270 degrees
[(1, False), (2, False), (3, False)]

Every variant is the one U-Net skeleton (:class:`UNet`) with a :class:`ConvFamily`, built by
:func:`create` through the same path with the same arguments. It maps ``(B, in_channels, H,
W)`` (H, W divisible by ``2**depth``: :func:`check_input_size`) to logits
``(B, out_channels, H, W)`` and, for an equivariant one, ``model(g x) = g model(x)`` for the
rotations by multiples of 90 degrees (and mirrors for ``p4m``/``steerable-flip``) exactly
(:func:`check_equivariance`). ``model.export()`` gives an equivalent plain torch module;
``model.config`` rebuilds it through :func:`from_config`. Layout and group conventions:
:mod:`zoo.groups`; what a family supplies: :mod:`zoo.family`. The ``*-partial`` and ``*-rpp``
variants learn how much of their symmetry to keep (:func:`learned_symmetry`); train any variant
with ``AdamW(param_groups(model, lr, wd))`` and the loss plus ``regularisation(model)``
(``None`` for most variants).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names resolve to, for type checkers and IDEs
    from zoo.base import ExpandedConv2d
    from zoo.describe import count_parameters, describe, describe_variant, match_params
    from zoo.equivariance import check_equivariance
    from zoo.family import ConvFamily, WrappedFamily
    from zoo.groups import P4, P4M, TRIVIAL, Group, transform_fields, transform_image
    from zoo.learned import learned_symmetry
    from zoo.norm import GroupBatchNorm2d
    from zoo.optim import param_groups, regularisation
    from zoo.plain import PlainFamily
    from zoo.pooling import RotationPool, upsample2x
    from zoo.registry import (
        DEFAULT_FIELDS,
        DEFAULT_WIDTH,
        available,
        create,
        create_family,
        from_config,
        recorded_options,
        variant,
    )
    from zoo.rot90 import Rot90Family, Rot90GroupConv, Rot90LiftConv
    from zoo.sizes import DEFAULT_DEPTH, check_input_size, valid_sizes
    from zoo.unet import UNet

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
    "Rot90LiftConv",
    "RotationPool",
    "UNet",
    "WrappedFamily",
    "available",
    "check_equivariance",
    "check_input_size",
    "count_parameters",
    "create",
    "create_family",
    "describe",
    "describe_variant",
    "from_config",
    "learned_symmetry",
    "match_params",
    "param_groups",
    "recorded_options",
    "regularisation",
    "transform_fields",
    "transform_image",
    "upsample2x",
    "valid_sizes",
    "variant",
]

# The public names are lazy (PEP 562): ``import zoo.options`` (string options, no torch) loads
# nothing else, so ``polypseg --help`` and the serving path stay free of torch and the layers.
# Each name's home module:
_HOMES: dict[str, str] = {
    "ExpandedConv2d": "base",
    "count_parameters": "describe",
    "describe": "describe",
    "describe_variant": "describe",
    "match_params": "describe",
    "check_equivariance": "equivariance",
    "ConvFamily": "family",
    "WrappedFamily": "family",
    "P4": "groups",
    "P4M": "groups",
    "TRIVIAL": "groups",
    "Group": "groups",
    "transform_fields": "groups",
    "transform_image": "groups",
    "learned_symmetry": "learned",
    "GroupBatchNorm2d": "norm",
    "param_groups": "optim",
    "regularisation": "optim",
    "PlainFamily": "plain",
    "RotationPool": "pooling",
    "upsample2x": "pooling",
    "DEFAULT_FIELDS": "registry",
    "DEFAULT_WIDTH": "registry",
    "available": "registry",
    "create": "registry",
    "create_family": "registry",
    "from_config": "registry",
    "recorded_options": "registry",
    "variant": "registry",
    "Rot90Family": "rot90",
    "Rot90GroupConv": "rot90",
    "Rot90LiftConv": "rot90",
    "DEFAULT_DEPTH": "sizes",
    "check_input_size": "sizes",
    "valid_sizes": "sizes",
    "UNet": "unet",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(f"zoo.{_HOMES[name]}"), name)
        globals()[name] = value
        return value
    try:  # a submodule not imported yet (``zoo.registry.RECORDED_BEFORE`` after ``import zoo``)
        return importlib.import_module(f"zoo.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"zoo.{name}":
            raise
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The ``zoo`` module: importing the submodule ``zoo.describe`` does not bind it over the
    function :func:`describe` of the same name (the import system sets a package's attribute
    for every submodule it loads; the eager package bound the function after it)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _HOMES:
            return  # ``zoo.<name>`` stays the public name; the submodule is in sys.modules
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
