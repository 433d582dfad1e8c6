"""Usage errors through the installed ``polypseg`` console script: one line, exit status 2.

typer raises its own (vendored) copy of click's exceptions, which ``polypseg.cli.main`` must
recognise; these tests run the real entry point in a subprocess, as a user would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def console_script() -> str:
    """The ``polypseg`` script installed beside this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "polypseg"
    if beside.is_file():
        return str(beside)
    found = shutil.which("polypseg")
    if found is None:
        pytest.skip("the polypseg console script is not installed (pip install -e .)")
    return found


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100"}
    return subprocess.run(
        [console_script(), *args], capture_output=True, text=True, timeout=120, env=env
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["export", "RUN", "--format", "pickle", "--out", "x"], "'pickle' is not one of"),
        (["train", "--epochs", "abc"], "--epochs"),
        (["serve", "MODEL", "--port", "0"], "--port"),
        (["predict", "MODEL", "img.png", "--out", "o", "--tta", "foo"], "'foo'"),
        (["predict", "MODEL", "img.png", "--out", "o", "--threshold", "2"], "--threshold"),
        (["train", "--no-such-flag"], "--no-such-flag"),
        (["export", "RUN", "--out", "x"], "Missing option '--format'"),
        (["predict"], "Missing argument"),
        (["no-such-command"], "No such command"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(args: list[str], needle: str):
    done = run_cli(*args)
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_help_still_exits_0():
    done = run_cli("serve", "--help")
    assert done.returncode == 0 and "--max-bytes" in done.stdout
