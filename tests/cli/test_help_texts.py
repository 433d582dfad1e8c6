"""A command's docstring is its ``--help`` text up to a form feed: the ``Args:`` section after
it (``tests/test_polypseg_docstrings.py``) shows in no help, neither the command's own nor its
group's list of commands."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from polypseg.cli import app

_COMMAND = typer.main.get_command(app)


def _paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += _paths(sub, (*path, name))
    return found


def _command(path: tuple[str, ...]) -> Any:
    command = _COMMAND
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


@pytest.mark.parametrize("path", _paths(_COMMAND), ids=lambda p: " ".join(("polypseg", *p)))
def test_help_shows_no_args_section(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Args:" not in result.output
    assert "\f" not in result.output


def test_commands_with_args_sections_cut_them_at_a_form_feed() -> None:
    """Each documented command's help ends at ``\\f`` right after its text (a blank line before
    the form feed would show as an empty paragraph in typer's rich help)."""
    documented = [path for path in _paths(_COMMAND) if "Args:" in (_command(path).help or "")]
    assert documented, "no command documents its parameters"
    for path in documented:
        text = inspect.cleandoc(_command(path).help or "")
        shown, cut, rest = text.partition("\f")
        assert cut, f"{' '.join(path)}: its Args: section has no form feed before it"
        assert shown == shown.rstrip() and "Args:" not in shown and "Args:" in rest
