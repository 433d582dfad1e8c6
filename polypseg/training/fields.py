"""What a :class:`~polypseg.training.config.TrainConfig` field is beyond its type and default:
the command-line option that sets it and the range of values it accepts.

Both travel as dataclass field metadata (:func:`setting`), so the field is the one place that
names the option, says what it means and bounds it. ``polypseg.cli.options_from_config``
builds ``polypseg train``'s options from them and ``TrainConfig.validate`` checks the bounds.
The set of accepted values of a field with one is its type (a ``str`` :class:`enum.Enum`), which
typer shows and checks as choices. This module imports nothing heavy (no typer, no torch):
``polypseg --help`` reads it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

_METADATA_KEY = "polypseg"


@dataclass(frozen=True)
class Bound:
    """The closed or open interval a number must lie in; ``None``: unbounded on that side."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, value: float) -> bool:
        """Whether ``value`` lies inside (NaN never does)."""
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return bool(above and below)

    def describe(self) -> str:
        """``>= 1``, ``> 0`` or ``in (0, 1]``: the interval as an error message says it."""
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


@dataclass(frozen=True)
class CliOption:
    """How a field shows on the command line.

    Attributes:
        flags: typer's declarations: ``("--model", "--variant")``; a bool field's
            ``("--amp/--no-amp",)``, or ``("--resume",)`` for a flag that only turns it on.
        help: the option's help text.
        path: the value is a file or folder (typer's ``PATH``), kept as a string in the field.
        bound_on_cli: typer checks the field's :class:`Bound` and shows it in ``--help``;
            otherwise only ``TrainConfig.validate`` does.
    """

    flags: tuple[str, ...]
    help: str
    path: bool = False
    bound_on_cli: bool = False

    @property
    def on_off(self) -> tuple[str, str | None]:
        """``("--amp", "--no-amp")``: the flag that sets the value (turns a bool on) and the
        one that turns a bool off (``None`` when there is none)."""
        on, _, off = self.flags[0].partition("/")
        return on, off or None

    @property
    def switch_only(self) -> bool:
        """A bool flag without a ``--no-`` form: given means on, absent means "not given"."""
        return all("/" not in flag for flag in self.flags)


def setting(
    default: Any = dataclasses.MISSING,
    *,
    cli: CliOption | None = None,
    bound: Bound | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field carrying its command-line option (``None``: a config-file-only
    setting) and its bound.

    Args:
        default: the field's default value.
        cli: the option that sets it on the command line, if any.
        bound: the interval its value must lie in (``None`` values are not checked).
        default_factory: instead of ``default``, for mutable defaults.
    """
    metadata = {_METADATA_KEY: (cli, bound)}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def cli_option(field: dataclasses.Field[Any]) -> CliOption | None:
    """The command-line option of ``field``; ``None`` when the command line does not set it."""
    return field.metadata.get(_METADATA_KEY, (None, None))[0]


def bound_of(field: dataclasses.Field[Any]) -> Bound | None:
    """The bound of ``field``'s value; ``None`` when any value of its type goes."""
    return field.metadata.get(_METADATA_KEY, (None, None))[1]
