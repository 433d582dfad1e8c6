"""Variants by name: one factory from a name to a U-Net, the same constructor for all of them.

Every variant is :class:`~zoo.unet.UNet` with a different :class:`~zoo.family.ConvFamily`,
built through the same path (:func:`create`: family, then skeleton), so every variant takes the
same arguments: the sizes, the skeleton's options and its family's options.

=================  ==========================================  =========  ============
name               convolutions                                group      ``|G|``
=================  ==========================================  =========  ============
``unet``           plain ``nn.Conv2d`` (:mod:`zoo.plain`)      ``C1``     1
``p4``             rot90 group convs (:mod:`zoo.rot90`)        ``C4``     4
``p4m``            rot90 + mirror group convs                  ``D4``     8
``se2n12``         SE(2,12) interpolated convs (:mod:`zoo.se2`)  ``C12``  12
``steerable``      e2cnn regular fields of ``C8``              ``C8``     8
``steerable-flip`` e2cnn regular fields of ``D8``              ``D8``     16
``steerable-so2``  SO(2) irreps fields (:mod:`zoo.so2`)        SO(2)      5 (L = 2)
``p4-partial``     p4, each layer on a learned subset of C4     ``C4``     4
``se2n12-partial`` SE(2,12), each layer on a learned subset     ``C12``    12
``p4-rpp``         p4 + a free conv pathway (:mod:`zoo.rpp`)   ``C4``     4
=================  ==========================================  =========  ============

The partial variants (:mod:`zoo.partial`, Romero & Lohit's partial G-CNNs) learn per layer the
subset of the group their output lives on; ``p4-rpp`` (residual pathway priors) adds to every
conv a plain one, zero at initialisation and held back by a strong weight decay. Both wrap
their parent's family (:class:`~zoo.family.WrappedFamily`); untrained, all three equal their
equivariant parent; what they learned: :func:`zoo.learned.learned_symmetry`.

``steerable-so2`` has no group axis: its fields are SO(2) irreps (frequencies 0..L), and its
family supplies its own norm, nonlinearity, pooling and invariant pooling; it is exactly
equivariant to the rot90 subgroup.

A family's module is imported only when its variant is built, so a missing e2cnn breaks the
steerable variants alone (:func:`unavailable` says why).

Default widths follow the talk: the plain U-Net has 16 channels in its first stage (1,964,129
parameters here, 1,964,029 in the talk), every group variant 8 fields (p4: 1,962,417 here,
1,965,625 in the talk; SE(2,12) with 5x5 kernels about the talk's 16.5M). A field of ``|G|``
channels costs ``|G|`` times a channel, so compare variants at equal parameters with
:func:`zoo.describe.match_params` (``polypseg models --match-params unet``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from zoo.family import ConvFamily
from zoo.sizes import DEFAULT_DEPTH
from zoo.unet import UNet

#: Width of ``unet`` (channels); every group variant defaults to :data:`DEFAULT_FIELDS` fields.
DEFAULT_WIDTH = 16
DEFAULT_FIELDS = 8
#: Options taken by the skeleton itself; every other option goes to the variant's family.
SKELETON_OPTIONS = ("upsample", "rotation_pool", "head_norm")
#: Options added to the skeleton after models were first recorded, with the value every model
#: recorded without them was built with: a config (or checkpoint ``model`` kwargs) that lacks
#: one rebuilds the model it was recorded from (:func:`recorded_options`).
RECORDED_BEFORE: dict[str, Any] = {"head_norm": False}


@dataclass(frozen=True)
class Variant:
    """A registered variant: its name, a one-line summary and how to build its family.

    ``family`` is the ``"module:Class"`` of its :class:`~zoo.family.ConvFamily` and ``fixed``
    the constructor arguments the variant fixes (``n=12``, ``flip=True``); ``wrapper``, when
    given, the ``"module:Class"`` of a :class:`~zoo.family.WrappedFamily` around it, which takes
    the options it names in its ``options``. Modules are imported when the variant is built.
    ``default_width`` is the width :func:`create` uses when given none.
    """

    name: str
    summary: str
    family: str
    fixed: dict[str, Any] = field(default_factory=dict)
    wrapper: str | None = None
    default_width: int = DEFAULT_FIELDS

    def paths(self) -> list[str]:
        """The ``"module:Class"`` paths this variant imports."""
        return [self.family] + ([self.wrapper] if self.wrapper else [])


_ROT90, _SE2 = "zoo.rot90:Rot90Family", "zoo.se2:SE2Family"
_STEERABLE = "zoo.steerable:SteerableFamily"
_PARTIAL, _RPP = "zoo.partial:PartialFamily", "zoo.rpp:ResidualPathwayFamily"

_VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("unet", "plain U-Net (nn.Conv2d), the baseline", "zoo.plain:PlainFamily",
                default_width=DEFAULT_WIDTH),
        Variant("p4", "p4 group convs: rot90 filters, C4 regular fields", _ROT90),
        Variant("p4m", "p4m group convs: rot90 + mirror, D4 regular fields", _ROT90,
                {"flip": True}),
        Variant("se2n12", "SE(2,12) interpolated convs, C12 regular fields", _SE2, {"n": 12}),
        Variant("steerable", "e2cnn steerable convs, C8 regular fields", _STEERABLE, {"n": 8}),
        Variant("steerable-flip", "e2cnn steerable convs, D8 regular fields", _STEERABLE,
                {"n": 8, "flip": True}),
        Variant("steerable-so2", "e2cnn-basis SO(2) convs, irreps fields (frequencies <= 2)",
                "zoo.so2:SO2Family"),
        Variant("p4-partial", "p4, every layer on a learned subset of C4 (partial G-CNN)",
                _ROT90, wrapper=_PARTIAL),
        Variant("se2n12-partial", "SE(2,12), every layer on a learned subset of C12 (partial)",
                _SE2, {"n": 12}, wrapper=_PARTIAL),
        Variant("p4-rpp", "p4 + a free conv pathway, zero at init, held back by L2 (RPP)",
                _ROT90, wrapper=_RPP),
    )
}  # fmt: skip


def _load(path: str) -> Any:
    """The object ``"module:Name"`` names (the module imported now)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def available() -> list[str]:
    """Names accepted by :func:`create`, in table order (see :func:`unavailable`)."""
    return list(_VARIANTS)


def unavailable(name: str) -> str | None:
    """Why variant ``name`` cannot be built here (its module, e2cnn, ...), or ``None``."""
    for path in variant(name).paths():
        module_name, _, attribute = path.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            return f"{module_name} cannot be imported: {err}"
        if not hasattr(module, attribute):
            return f"{module_name} does not define {attribute}"
    return None


def variant(name: str) -> Variant:
    """The registered :class:`Variant`; ``ValueError`` listing :func:`available` if unknown."""
    try:
        return _VARIANTS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown model variant {name!r}; available: {', '.join(available())}"
        ) from None


def create_family(name: str, **options: Any) -> ConvFamily:
    """The :class:`~zoo.family.ConvFamily` of variant ``name`` with the family ``options``
    (those of its wrapper go to the wrapper); ``TypeError`` for an option it does not take."""
    entry = variant(name)
    wrapper = _load(entry.wrapper) if entry.wrapper else None
    own = {k: options.pop(k) for k in (wrapper.options if wrapper else ()) if k in options}
    family = _load(entry.family)(**entry.fixed, **options)
    return family if wrapper is None else wrapper(family, **own)


def create(
    name: str,
    in_channels: int = 3,
    out_channels: int = 1,
    width: int | None = None,
    depth: int = DEFAULT_DEPTH,
    **variant_options: Any,
) -> nn.Module:
    """Build variant ``name``: ``(B, in_channels, H, W) -> (B, out_channels, H, W)`` logits.

    Args:
        name: a name of :func:`available`.
        in_channels: image channels.
        out_channels: logit channels.
        width: fields of the first stage (channels = fields * ``|G|``), doubled at every one
            of the ``depth`` levels; ``None``: the variant's ``default_width`` (16 for
            ``unet``, 8 for the group variants).
        depth: number of 2x2 poolings; H and W must be divisible by ``2**depth``
            (:func:`zoo.sizes.check_input_size`).
        **variant_options: ``upsample`` (``"bilinear"``/``"nearest"``), ``rotation_pool``
            (one of the family's ``pool_modes``: ``"max"``/``"mean"``, ``"norm"``/``"mean"``
            for ``steerable-so2``) and ``head_norm`` (bool, default on: :class:`~zoo.unet.UNet`)
            for the skeleton; the rest go to the family (e.g.
            ``kernel_size``, ``bias``, e2cnn's ``sigma``; the wrappers' own, e.g.
            ``keep_weight``, ``free_decay``).

    The model's ``config`` rebuilds it: ``zoo.from_config(model.config)``; it records
    ``head_norm`` resolved, so a config always says which head it was built with. An unknown
    name or option is a ``ValueError`` that says what is accepted.
    """
    entry = variant(name)
    width = entry.default_width if width is None else width
    skeleton = {k: variant_options[k] for k in SKELETON_OPTIONS if k in variant_options}
    family_options = {k: v for k, v in variant_options.items() if k not in skeleton}
    sizes = {"in_channels": in_channels, "out_channels": out_channels, "width": width}
    try:
        family = create_family(name, **family_options)
        model = UNet(family, **sizes, depth=depth, **skeleton)
    except TypeError as err:
        raise ValueError(f"bad options for variant {name!r}: {err}") from None
    model.config = {
        "variant": name,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "width": width,
        "depth": depth,
        **variant_options,
        "head_norm": model.head_norm,
    }
    return model


def recorded_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` of a recorded config, with every option it predates set to the value models
    were built with then (:data:`RECORDED_BEFORE`): what rebuilds the recorded model."""
    return {**RECORDED_BEFORE, **kwargs}


def from_config(config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from its ``config`` (``{"variant": name, **create_kwargs}``); a config
    recorded before an option existed rebuilds the model it was recorded from
    (:func:`recorded_options`)."""
    kwargs = recorded_options(dict(config))
    return create(kwargs.pop("variant"), **kwargs)
