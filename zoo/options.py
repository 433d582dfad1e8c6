"""String options of zoo layers: the accepted values as string enums, one look-up for all.

Each option with a fixed set of values (a pooling mode, an upsampling mode, a field kind) is a
:class:`StrOption` enum; :func:`look_up_option` turns what a caller passed (the enum or its
string, as a ``model.config`` read back from JSON holds it) into the member, or raises one
``ValueError`` that names the option and lists what it accepts (after MONAI's
``monai.utils.look_up_option``, without importing MONAI: ``zoo`` stays light to import; this
module imports nothing but the standard library, so ``import zoo.options`` loads no torch).
An application that reports its users' errors with its own exception class passes it as
``error`` (``polypseg.options`` declares its options on :class:`StrOption` this way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import Enum
from typing import TypeVar


class StrOption(str, Enum):
    """A string-valued option: members compare equal to, and print as, their strings."""

    def __str__(self) -> str:
        return str(self.value)


class PoolMode(StrOption):
    """How an invariant map is taken from a field (:meth:`zoo.family.ConvFamily.invariant_pool`).

    ``max``/``mean``: over the ``|G|`` channels of a regular field; for SO(2) irreps fields
    ``mean`` is the mean over the circle (the invariant part ``psi_0``) and ``norm`` keeps
    ``psi_0`` and the norm of every other frequency.
    """

    MAX = "max"
    MEAN = "mean"
    NORM = "norm"


class UpsampleMode(StrOption):
    """x2 upsampling of the decoder: bilinear (``align_corners=False``) or nearest."""

    BILINEAR = "bilinear"
    NEAREST = "nearest"


class FieldKind(StrOption):
    """What one field of a steerable layer is (:mod:`zoo.steerable`, :mod:`zoo.so2`)."""

    TRIVIAL = "trivial"  # one invariant channel (an image channel)
    REGULAR = "regular"  # the regular representation of C_N or D_N (|G| channels)
    IRREPS = "irreps"  # SO(2) irreps psi_0 + ... + psi_L (1 + 2L channels)


Option = TypeVar("Option", bound=StrOption)


def _listing(values: list[str]) -> str:
    quoted = [repr(v) for v in values]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def look_up_option(
    value: object,
    choices: type[Option],
    name: str,
    allowed: Iterable[Option] | None = None,
    *,
    error: Callable[[str], Exception] = ValueError,
) -> Option:
    """The member of ``choices`` that ``value`` (a member or its string) names.

    Args:
        value: what the caller passed.
        choices: the option's enum.
        name: the option's name in the error message (e.g. ``"rotation_pool"``).
        allowed: the members accepted here, when a caller takes only some of them (e.g. a
            family's pooling modes); all of ``choices`` by default.
        error: the exception class (or factory) raised with the message.

    Raises ``error("{name} is 'a' or 'b', got 'c'")`` (a ``ValueError`` by default) for
    anything else.
    """
    members = list(choices) if allowed is None else list(allowed)
    for member in members:
        if value is member or (isinstance(value, str) and value == member.value):
            return member
    raise error(f"{name} is {_listing([m.value for m in members])}, got {value!r}")
