"""``polypseg models`` in an 80-column terminal, and flags in ``--help``."""

from __future__ import annotations

import pytest

from polypseg.cli import main


def test_models_fits_80_columns_with_the_right_groups(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["models", "--width", "1", "--depth", "1", "--size", "16"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.strip() and line.split()[0] in ("steerable-so2", "steerable-flip", "p4")}
    assert rows["steerable-so2"][1] == "SO(2)"  # irreps fields, not C4's regular ones
    assert rows["steerable-flip"][1] == "D8" and rows["p4"][1] == "C4"  # names never cut
    assert "steerable-so2: e2cnn-basis SO(2) convs" in out  # the summaries below the table


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["report"], ["models"]])
def test_flags_show_no_type_in_help(command: list[str], capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--help" in out and "<bool>" not in out
