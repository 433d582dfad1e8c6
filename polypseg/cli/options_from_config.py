"""A typer command's options built from a dataclass's fields.

typer reads a command's parameters from its signature. :func:`options_from` gives a command
the signature ``(*leading, one option per field with a command-line option)``: each field's
flags, help text and (where it says so) bound come from its metadata
(:mod:`polypseg.training.fields`), its type from its annotation. The command takes the fields
as ``**values`` keyed by field name, and :func:`given_values` keeps those the user gave, so
nothing between the command line and the dataclass copies a name by hand.

Every option defaults to "not given" (``None``; ``False`` for a flag without a ``--no-`` form),
so a value from a config file or a resumed run is overridden only by an option on the command
line.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from polypseg.training.fields import CliOption, bound_of, cli_option

Command = TypeVar("Command", bound=Callable[..., Any])


def _value_type(hint: Any) -> Any:
    """The one non-``None`` type of a field annotation (``int | None`` -> ``int``)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) != 1:
            raise TypeError(f"an option's field needs one value type, not {hint}")
        return args[0]
    return hint


def _parameter(field: dataclasses.Field[Any], hint: Any, option: CliOption) -> inspect.Parameter:
    """The typer parameter of one field (named as the field)."""
    value_type = Path if option.path else _value_type(hint)
    bound = bound_of(field) if option.bound_on_cli else None
    limits: dict[str, Any] = {}
    if bound is not None:
        if bound.low_open or bound.high_open:  # typer's ranges are closed
            raise TypeError(f"{field.name}: typer cannot check an open bound; leave it to "
                            "the dataclass (bound_on_cli=False)")
        limits = {"min": bound.low, "max": bound.high}
    info = typer.Option(*option.flags, help=option.help, **limits)
    if value_type is bool and option.switch_only:
        annotation: Any = Annotated[bool, info]
        default: Any = False
    else:
        annotation, default = Annotated[value_type | None, info], None
    return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)


def option_parameters(config_type: type) -> list[inspect.Parameter]:
    """One typer parameter per field of ``config_type`` that has a command-line option, in the
    order of the fields."""
    hints = typing.get_type_hints(config_type)
    return [
        _parameter(field, hints[field.name], option)
        for field in dataclasses.fields(config_type)
        if (option := cli_option(field)) is not None
    ]


def options_from(
    config_type: type, leading: Sequence[inspect.Parameter] = ()
) -> Callable[[Command], Command]:
    """Decorator: the command's signature becomes ``leading`` then :func:`option_parameters`
    (the command itself takes ``leading`` and ``**values``)."""
    fields = option_parameters(config_type)
    clash = {p.name for p in leading} & {p.name for p in fields}
    if clash:
        raise TypeError(f"parameters named as fields of {config_type.__name__}: {sorted(clash)}")

    def give_signature(command: Command) -> Command:
        command.__signature__ = inspect.Signature([*leading, *fields])  # type: ignore[attr-defined]
        return command

    return give_signature


def given_values(config_type: type, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (field name -> what the command received) less the options left at "not
    given", paths as strings (as the fields hold them)."""
    given: dict[str, Any] = {}
    for field in dataclasses.fields(config_type):
        option = cli_option(field)
        if option is None or field.name not in values:
            continue
        value = values[field.name]
        if value is None or (value is False and option.switch_only):
            continue
        given[field.name] = str(value) if option.path else value
    return given
