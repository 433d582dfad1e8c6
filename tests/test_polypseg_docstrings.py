"""Every public function and method of polypseg with four or more parameters documents every
parameter in an ``Args:`` section (the rule of ``tests/zoo/test_docstrings.py``, applied to
functions: zoo's constructors there, polypseg's functions here). Named apart from zoo's file:
pytest imports test files by basename.

Public: a module of ``polypseg`` (any depth) whose name does not start with ``_``; in it, a
function or class defined there whose name does not start with ``_``; of such a class, the
methods defined in its own body whose names do not start with ``_``, and its ``__init__``
(documented in the class docstring or ``__init__``'s, as zoo's rule has it; dataclasses'
generated ``__init__`` is documented by the class's fields and left out). Parameters count
without ``self``/``cls``; ``*args``/``**kwargs`` are named with their stars.

Typer commands of ``polypseg/cli`` are public functions like any other. A command's docstring
is its help text, so its ``Args:`` section follows a form feed (``\\f``) at the end of the help's
last line, where click and typer cut the help; ``polypseg CMD --help`` and the lists of commands
show none of it (``tests/cli/test_help_texts.py``). One kind of function is left out: one whose
signature is only ``(*leading, **values)`` in its source but is given a built one
(``__signature__``, e.g. ``polypseg train``'s from ``TrainConfig``'s fields by
:func:`polypseg.cli.options_from_config.options_from`); its parameters are the dataclass's
fields, documented there, and such a function counts only the parameters of its own source.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import polypseg
from tests.docstring_args import args_names

MIN_PARAMETERS = 4


def _modules() -> Iterator[Any]:
    for info in pkgutil.walk_packages(polypseg.__path__, prefix="polypseg."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        yield importlib.import_module(info.name)


def _own_signature(function: Callable[..., Any]) -> inspect.Signature:
    """The signature of the function's source, not a ``__signature__`` built for typer."""
    if "__signature__" in vars(function):
        function = types.FunctionType(function.__code__, function.__globals__)
    return inspect.signature(function)


def _wanted(function: Callable[..., Any], method: bool) -> set[str]:
    params = list(_own_signature(function).parameters.values())
    if method and params and params[0].name in ("self", "cls"):
        params = params[1:]
    return {
        ("**" if p.kind is p.VAR_KEYWORD else "*" if p.kind is p.VAR_POSITIONAL else "") + p.name
        for p in params
    }


def _public_functions() -> list[tuple[str, Callable[..., Any], tuple[str | None, ...]]]:
    """``(qualified name, function, the docstrings its Args: may be in)`` of every public
    function and method."""
    found = []
    for module in _modules():
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                found.append((f"{module.__name__}.{name}", obj, (obj.__doc__,)))
            elif inspect.isclass(obj):
                found += _public_methods(module.__name__, obj)
    return found


def _public_methods(
    module: str, cls: type
) -> list[tuple[str, Callable[..., Any], tuple[str | None, ...]]]:
    found = []
    for name, attr in vars(cls).items():
        function = attr.__func__ if isinstance(attr, (staticmethod, classmethod)) else attr
        if not inspect.isfunction(function):
            continue
        if name == "__init__" and not dataclasses.is_dataclass(cls):
            found.append(
                (f"{module}.{cls.__qualname__}", function, (cls.__doc__, function.__doc__))
            )
        elif not name.startswith("_"):
            found.append((f"{module}.{cls.__qualname__}.{name}", function, (function.__doc__,)))
    return found


def _documented(docs: tuple[str | None, ...]) -> set[str]:
    """Names listed in the ``Args:`` sections of the docstrings (zoo's parser)."""
    return args_names(docs)


def _cases() -> list[Any]:
    cases = []
    for qualname, function, docs in _public_functions():
        method = "." in function.__qualname__
        wanted = _wanted(function, method)
        if len(wanted) >= MIN_PARAMETERS:
            cases.append(pytest.param(function, wanted, docs, id=qualname))
    return cases


@pytest.mark.parametrize(("function", "wanted", "docs"), _cases())
def test_every_parameter_is_documented(
    function: Callable[..., Any], wanted: set[str], docs: tuple[str | None, ...]
) -> None:
    missing = wanted - _documented(docs)
    assert not missing, f"{function.__module__}.{function.__qualname__}: document {sorted(missing)}"


def test_the_rule_finds_functions_of_every_layer() -> None:
    """The walk reaches subpackages, methods and typer commands (a walk that found nothing
    would pass every case above)."""
    names = {case.id for case in _cases()}
    assert any(name.startswith("polypseg.cli.") for name in names)
    assert any(name.startswith("polypseg.training.") for name in names)
    assert any(name.count(".") >= 3 and name.split(".")[-2][0].isupper() for name in names)


def test_the_parser_reads_only_the_args_section() -> None:
    doc = """Summary.

    Args:
        size: the side in px.
        mean, std: the normalisation.
        **options: passed on.

    Returns:
        width: not an argument.
    """
    assert _documented((doc,)) == {"size", "mean", "std", "**options"}
