"""Output-folder errors and ``serve``/``export`` start-up checks through the CLI's entry
point (``polypseg.cli.main``, in-process: tests/cli/test_usage_errors.py runs the installed
script): one line naming the path (or option) and the cause, exit 2, nothing written. (Tests
run as root, so a read-only folder is simulated at the write layer, in tests/test_atomic.py;
here a file stands in the way.)"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from polypseg.cli import main


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture()
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """``polypseg ARGS`` in-process: its exit status and output."""
    monkeypatch.setenv("NO_COLOR", "1")

    def run(*args: str) -> Done:
        code = main(list(args))
        out, err = capsys.readouterr()
        return Done(code, out, err)

    return run


def assert_one_line(done: Done, *needles: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture()
def in_the_way(tmp_path: Path) -> Path:
    """A plain file where an output folder would go."""
    path = tmp_path / "taken"
    path.write_text("not a folder\n")
    return path


@pytest.mark.parametrize("below", [False, True], ids=["out-is-a-file", "out-below-a-file"])
@pytest.mark.parametrize(
    "command",
    [
        ["train", "--model", "unet", "--epochs", "1"],
        ["predict", "MODEL", "img.png"],
        ["evaluate", "RUN"],
        ["export", "RUN", "--format", "onnx", "--overwrite"],
    ],
    ids=["train", "predict", "evaluate", "export"],
)
def test_out_that_cannot_be_a_folder_is_one_line_before_any_work(
    command: list[str], below: bool, in_the_way: Path, run_cli
):
    out = in_the_way / "run" if below else in_the_way
    done = run_cli(*command, "--out", str(out))
    cause = "is a file, not a folder" if below else "in the way"
    assert_one_line(done, str(out), cause)
    assert in_the_way.read_text() == "not a folder\n"  # untouched


def test_serve_checks_the_port_before_loading_the_model(run_cli):
    """A busy port is said at once, before the model (here missing) is even looked at."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = run_cli("serve", "NO-SUCH-MODEL", "--port", str(port))
    assert_one_line(done, f"127.0.0.1:{port}", "already in use")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["serve", "M", "--host", "999.1.1.1"], ["--host '999.1.1.1'", "not an address"]),
        (["serve", "M", "--max-bytes", "0"], ["--max-bytes must be positive"]),
        (["serve", "M", "--max-memory", "0MiB"], ["--max-memory must be positive"]),
        (["export", "RUN", "--format", "onnx", "--out", "OUT", "--tolerance", "-1"],
         ["--tolerance"]),
        (["export", "RUN", "--format", "onnx", "--out", "OUT", "--opset", "5"],
         ["--opset 5 is not supported", "choose 11 to"]),
        (["export", "RUN", "--format", "onnx", "--out", "OUT", "--opset", "13",
          "--onnx-exporter", "dynamo"], ["--opset 13", "opset 18 only"]),
    ],
    ids=["bad-host", "max-bytes-0", "max-memory-0", "tolerance", "opset-5", "opset-13-dynamo"],
)  # fmt: skip
def test_start_up_values_are_one_line_usage_errors(
    args: list[str], needles: list[str], tmp_path: Path, run_cli
):
    out = tmp_path / "o"
    done = run_cli(*[str(out) if arg == "OUT" else arg for arg in args])
    assert_one_line(done, *needles)
    assert not out.exists()


def test_an_os_error_of_the_file_system_that_escapes_is_one_line(
    run_cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """A write outside the atomic layer (a library's own) refused by the file system."""
    import errno
    import os

    import polypseg.cli.deploy as deploy_cli

    def read_only(*_: object, **__: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / "o" / "model.onnx"))

    monkeypatch.setattr(deploy_cli, "_set_threads", read_only)
    done = run_cli("predict", "MODEL", "img.png", "--out", str(tmp_path / "o"), "--threads", "1")
    assert_one_line(done, str(tmp_path / "o" / "model.onnx"), "read-only file system")
