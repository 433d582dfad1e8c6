"""The package: its doctest runs and lists every registered variant; the docs table does too."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import zoo

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "models.md"


def test_the_package_doctest_runs_and_lists_every_registered_variant() -> None:
    results = doctest.testmod(zoo)
    assert results.failed == 0 and results.attempted >= 5
    listed = zoo.__doc__.split("zoo.available()", 1)[1].split(">>>", 1)[0]
    assert all(f"'{name}'" in listed for name in zoo.available())  # the doctest checks order


def test_the_models_doc_lists_every_registered_variant() -> None:
    text = DOCS.read_text()
    for name in zoo.available():
        assert f"| `{name}` |" in text, name


def _fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=True)
    return done.stdout.strip()


def test_the_string_options_load_without_torch() -> None:
    code = ("import sys, zoo.options; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('zoo', 'torch')))")
    assert _fresh(code) == "['zoo', 'zoo.options']"


def test_every_public_name_resolves_lazily_from_its_module() -> None:
    assert set(zoo._HOMES) == set(zoo.__all__) <= set(dir(zoo))
    for name in zoo.__all__:
        home = importlib.import_module(f"zoo.{zoo._HOMES[name]}")
        assert getattr(zoo, name) is getattr(home, name), name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        zoo.nothing  # noqa: B018


def test_a_submodule_named_like_a_function_does_not_hide_it() -> None:
    # importing zoo.describe (the module) first, as polypseg.training.models does, must leave
    # zoo.describe the function; zoo.registry is reachable after a bare `import zoo`
    code = ("import zoo.describe, zoo; from zoo import describe; "
            "print(callable(zoo.describe), describe is zoo.describe, "
            "bool(zoo.registry.RECORDED_BEFORE))")
    assert _fresh(code) == "True True True"
