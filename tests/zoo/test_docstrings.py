"""Every public constructor of zoo documents every argument in an ``Args:`` section (e2cnn's
style), in the class docstring or in ``__init__``'s."""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import pkgutil

import pytest
from equivariance import missing_reason

import zoo
from tests.docstring_args import args_names


def _public_classes() -> list[type]:
    classes = []
    for info in pkgutil.iter_modules(zoo.__path__):
        if info.name in ("steerable", "so2") and missing_reason("steerable"):
            continue
        module = importlib.import_module(f"zoo.{info.name}")
        for name, cls in vars(module).items():
            if (
                inspect.isclass(cls)
                and cls.__module__ == module.__name__
                and not name.startswith("_")
                and "__init__" in vars(cls)
                and not dataclasses.is_dataclass(cls)
                and not issubclass(cls, (enum.Enum, Exception))
            ):
                classes.append(cls)
    return classes


def _documented(cls: type) -> set[str]:
    """Names listed in the ``Args:`` sections of the class and ``__init__`` docstrings."""
    return args_names((cls.__doc__, cls.__init__.__doc__))


@pytest.mark.parametrize("cls", _public_classes(), ids=lambda c: c.__qualname__)
def test_every_constructor_argument_is_documented(cls: type) -> None:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
    wanted = {
        ("**" if p.kind is p.VAR_KEYWORD else "*" if p.kind is p.VAR_POSITIONAL else "") + p.name
        for p in params
    }
    missing = wanted - _documented(cls)
    assert not missing, f"{cls.__module__}.{cls.__qualname__}: document {sorted(missing)}"
