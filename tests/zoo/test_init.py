"""The package: its doctest runs and lists every registered variant; the docs table does too."""

from __future__ import annotations

import doctest
from pathlib import Path

import zoo

DOCS = Path(__file__).resolve().parents[2] / "docs" / "models.md"


def test_the_package_doctest_runs_and_lists_every_registered_variant() -> None:
    results = doctest.testmod(zoo)
    assert results.failed == 0 and results.attempted >= 5
    listed = zoo.__doc__.split("zoo.available()", 1)[1].split(">>>", 1)[0]
    assert all(f"'{name}'" in listed for name in zoo.available())  # the doctest checks order


def test_the_models_doc_lists_every_registered_variant() -> None:
    text = DOCS.read_text()
    for name in zoo.available():
        assert f"| `{name}` |" in text, name
