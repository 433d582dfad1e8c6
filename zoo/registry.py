"""Variants by name: one factory from a name to a U-Net, the same constructor for all of them.

Every regular-field variant is :class:`~zoo.unet.UNet` with a different
:class:`~zoo.family.ConvFamily`:

=================  ==========================================  =========  ============
name               convolutions                                group      ``|G|``
=================  ==========================================  =========  ============
``unet``           plain ``nn.Conv2d`` (the baseline)          ``C1``     1
``p4``             rot90 group convs (:mod:`zoo.rot90`)        ``C4``     4
``p4m``            rot90 + mirror group convs                  ``D4``     8
``se2n12``         SE(2,12) interpolated convs (:mod:`zoo.se2`)  ``C12``  12
``steerable``      e2cnn regular fields of ``C8``              ``C8``     8
``steerable-flip`` e2cnn regular fields of ``D8``              ``D8``     16
``steerable-so2``  SO(2) irreps fields (:mod:`zoo.steerable`)  SO(2)      5 (L = 2)
``p4-partial``     p4, each layer on a learned subset of C4     ``C4``     4
``se2n12-partial`` SE(2,12), each layer on a learned subset     ``C12``    12
``p4-rpp``         p4 + a free conv pathway (:mod:`zoo.rpp`)   ``C4``     4
=================  ==========================================  =========  ============

The partial variants (:mod:`zoo.partial`, Romero & Lohit's partial G-CNNs) learn per layer the
subset of the group their output lives on; ``p4-rpp`` (residual pathway priors) adds to every
conv a plain one, zero at initialisation and held back by a strong weight decay. Untrained, all
three equal their equivariant parent; what they learned: :func:`zoo.learned.learned_symmetry`.

``steerable-so2`` has no group axis: its fields are SO(2) irreps (frequencies 0..L), built by
:mod:`zoo.steerable`'s own model factory; it is exactly equivariant to the rot90 subgroup.

The SE(2,N) and e2cnn families are imported only when their variant is built, so a missing
e2cnn breaks the steerable variants alone.

Default widths follow the talk: the plain U-Net has 16 channels in its first stage (1,964,097
parameters here, 1,964,029 in the talk), every group variant 8 fields (p4: 1,962,401 here,
1,965,625 in the talk; SE(2,12) with 5x5 kernels about the talk's 16.5M). A field of ``|G|``
channels costs ``|G|`` times a channel, so compare variants at equal parameters with
:func:`zoo.describe.match_params` (``polypseg models --match-params unet``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from zoo.family import ConvFamily
from zoo.rot90 import Rot90Family
from zoo.sizes import DEFAULT_DEPTH
from zoo.unet import PlainFamily, UNet

#: Width of ``unet`` (channels); every group variant defaults to :data:`DEFAULT_FIELDS` fields.
DEFAULT_WIDTH = 16
DEFAULT_FIELDS = 8
#: Options taken by the skeleton itself; every other option goes to the variant's family.
SKELETON_OPTIONS = ("upsample", "rotation_pool")
#: Options of the partial variants' learned subsets (:class:`zoo.partial.GroupSubset`).
PARTIAL_OPTIONS = ("init_logit", "temperature", "straight_through", "keep_weight")


def _se2(**options: Any) -> ConvFamily:
    from zoo.se2 import SE2Family

    return SE2Family(n=12, **options)


def _partial(base: Callable[..., ConvFamily]) -> Callable[..., ConvFamily]:
    def make(**options: Any) -> ConvFamily:
        from zoo.partial import PartialFamily

        subset = {k: options.pop(k) for k in PARTIAL_OPTIONS if k in options}
        return PartialFamily(base(**options), **subset)

    return make


def _rpp(base: Callable[..., ConvFamily]) -> Callable[..., ConvFamily]:
    def make(**options: Any) -> ConvFamily:
        from zoo.rpp import ResidualPathwayFamily

        free = {k: options.pop(k) for k in ("free_decay",) if k in options}
        return ResidualPathwayFamily(base(**options), **free)

    return make


def _steerable(flip: bool) -> Callable[..., ConvFamily]:
    def make(**options: Any) -> ConvFamily:
        from zoo.steerable import SteerableFamily

        return SteerableFamily(n=8, flip=flip, **options)

    return make


def _steerable_so2(**kwargs: Any) -> nn.Module:
    from zoo.steerable import create_so2_unet

    return create_so2_unet(**kwargs)


@dataclass(frozen=True)
class Variant:
    """A registered variant: its name, a one-line summary and how to build it.

    ``family`` maps the variant options to a :class:`~zoo.family.ConvFamily` for
    :class:`~zoo.unet.UNet`; a variant that is not a regular-field U-Net gives ``model`` instead,
    called with ``in_channels, out_channels, width, depth`` and the options. ``module`` names the
    zoo module imported lazily (``None``: always importable) and ``needs`` the name it must
    define; ``default_width`` is the width :func:`create` uses when given none.
    """

    name: str
    summary: str
    family: Callable[..., ConvFamily] | None = None
    module: str | None = None
    default_width: int = DEFAULT_FIELDS
    model: Callable[..., nn.Module] | None = None
    needs: str | None = None


_VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("unet", "plain U-Net (nn.Conv2d), the baseline", PlainFamily,
                default_width=DEFAULT_WIDTH),
        Variant("p4", "p4 group convs: rot90 filters, C4 regular fields", Rot90Family),
        Variant("p4m", "p4m group convs: rot90 + mirror, D4 regular fields",
                lambda **o: Rot90Family(flip=True, **o)),
        Variant("se2n12", "SE(2,12) interpolated convs, C12 regular fields", _se2, "zoo.se2"),
        Variant("steerable", "e2cnn steerable convs, C8 regular fields", _steerable(False),
                "zoo.steerable"),
        Variant("steerable-flip", "e2cnn steerable convs, D8 regular fields", _steerable(True),
                "zoo.steerable"),
        Variant("steerable-so2", "e2cnn-basis SO(2) convs, irreps fields (frequencies <= 2)",
                module="zoo.steerable", model=_steerable_so2, needs="create_so2_unet"),
        Variant("p4-partial", "p4, every layer on a learned subset of C4 (partial G-CNN)",
                _partial(Rot90Family), "zoo.partial"),
        Variant("se2n12-partial", "SE(2,12), every layer on a learned subset of C12 (partial)",
                _partial(_se2), "zoo.partial"),
        Variant("p4-rpp", "p4 + a free conv pathway, zero at init, held back by L2 (RPP)",
                _rpp(Rot90Family), "zoo.rpp"),
    )
}  # fmt: skip


def available() -> list[str]:
    """Names accepted by :func:`create`, in table order (see :func:`unavailable`)."""
    return list(_VARIANTS)


def unavailable(name: str) -> str | None:
    """Why variant ``name`` cannot be built here (its module, e2cnn, ...), or ``None``."""
    entry = variant(name)
    if entry.module is None:
        return None
    try:
        module = importlib.import_module(entry.module)
    except ImportError as err:
        return f"{entry.module} cannot be imported: {err}"
    if entry.needs and not hasattr(module, entry.needs):
        return f"{entry.module} does not define {entry.needs} yet"
    return None


def variant(name: str) -> Variant:
    """The registered :class:`Variant`; ``ValueError`` listing :func:`available` if unknown."""
    try:
        return _VARIANTS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown model variant {name!r}; available: {', '.join(available())}"
        ) from None


def create(
    name: str,
    in_channels: int = 3,
    out_channels: int = 1,
    width: int | None = None,
    depth: int = DEFAULT_DEPTH,
    **variant_options: Any,
) -> nn.Module:
    """Build variant ``name``: ``(B, in_channels, H, W) -> (B, out_channels, H, W)`` logits.

    ``width`` is the number of fields of the first stage (channels = fields * ``|G|``),
    doubled at every one of the ``depth`` levels (default: the variant's ``default_width``, 16
    for ``unet`` and 8 for the group variants); H and W must be divisible by ``2**depth``
    (:func:`zoo.sizes.check_input_size`).
    ``variant_options``: ``upsample`` (``"bilinear"``/``"nearest"``) and ``rotation_pool``
    (``"max"``/``"mean"``) for the skeleton; the rest goes to the family (e.g. ``kernel_size``).
    The model's ``config`` rebuilds it: ``zoo.from_config(model.config)``.
    """
    entry = variant(name)
    width = entry.default_width if width is None else width
    skeleton = {k: variant_options[k] for k in SKELETON_OPTIONS if k in variant_options}
    family_options = {k: v for k, v in variant_options.items() if k not in skeleton}
    sizes = {"in_channels": in_channels, "out_channels": out_channels, "width": width}
    try:
        if entry.model is not None:
            model = entry.model(**sizes, depth=depth, **variant_options)
        else:
            assert entry.family is not None
            model = UNet(entry.family(**family_options), **sizes, depth=depth, **skeleton)
    except TypeError as err:
        raise ValueError(f"bad options for variant {name!r}: {err}") from None
    model.config = {
        "variant": name,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "width": width,
        "depth": depth,
        **variant_options,
    }
    return model


def from_config(config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from its ``config`` (``{"variant": name, **create_kwargs}``)."""
    kwargs = dict(config)
    return create(kwargs.pop("variant"), **kwargs)
