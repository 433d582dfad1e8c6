"""Artifacts are readable by other users when the umask allows it (the container runs as uid
10001), and interrupted exports leave nothing that the next export does not clean up."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_helpers import REPO

from polypseg.deploy.export import export_run

#: The container image's user (docker/Dockerfile: USER 10001:10001).
CONTAINER_UID = 10001


def dead_pid() -> int:
    """The PID of a process that has exited."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture()
def shared_dir() -> Iterator[Path]:
    """A folder other users can traverse (pytest's tmp_path is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="polypseg-perm-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def export_with_umask(run_dir: Path, fmt: str, out: Path, umask: int) -> Path:
    previous = os.umask(umask)
    try:
        return export_run(run_dir, fmt, out, onnx_exporter="legacy").out
    finally:
        os.umask(previous)


@pytest.mark.parametrize(("umask", "dir_mode", "file_mode"),
                         [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])  # fmt: skip
def test_export_folder_and_files_follow_the_umask(
    run_dir: Path, tmp_path: Path, umask: int, dir_mode: int, file_mode: int
):
    out = export_with_umask(run_dir, "state", tmp_path / "state", umask)
    assert mode(out) == dir_mode
    for name in ("model.safetensors", "export.json"):
        assert mode(out / name) == file_mode, name


def test_checkpoint_weights_follow_the_umask(tmp_path: Path):
    import zoo
    from polypseg.checkpoint import CheckpointMeta, ModelSpec, save_checkpoint

    model = zoo.create("unet", in_channels=3, out_channels=1, width=2, depth=1)
    previous = os.umask(0o022)
    try:
        weights = save_checkpoint(tmp_path / "best", model, CheckpointMeta(ModelSpec.of(model)))
    finally:
        os.umask(previous)
    assert mode(weights) == 0o644 and mode(weights.with_suffix(".json")) == 0o644


READ_AS_OTHER_USER = """
import os, sys
from polypseg.deploy.bundle import open_model
for path in sys.argv[1:]:
    open_model(path)  # as root first: every lazy import happens before the switch
os.setgroups([])
os.setgid({uid})
os.setuid({uid})
for path in sys.argv[1:]:
    print(open_model(path).model_id)
"""


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="switching to the container's uid needs root")  # fmt: skip
def test_the_container_user_can_load_exports_and_checkpoints(run_dir: Path, shared_dir: Path):
    """As uid 10001 (the image's user), load what root exported under umask 022."""
    from polypseg.checkpoint import load_checkpoint, save_checkpoint

    run_copy = shared_dir / "run"
    model, meta = load_checkpoint(run_dir / "checkpoints" / "best")
    previous = os.umask(0o022)
    try:
        save_checkpoint(run_copy / "checkpoints" / "best", model, meta)
    finally:
        os.umask(previous)
    exports = [export_with_umask(run_copy, fmt, shared_dir / fmt, 0o022)
               for fmt in ("torchscript", "state")]  # fmt: skip
    code = READ_AS_OTHER_USER.format(uid=CONTAINER_UID)
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, exports), str(run_copy)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(done.stdout.split()) == 3


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="switching to the container's uid needs root")  # fmt: skip
def test_an_unreadable_model_is_a_one_line_error(run_dir: Path, shared_dir: Path):
    out = export_with_umask(run_dir, "torchscript", shared_dir / "ts", 0o077)
    code = (
        "import os, sys\n"
        "from polypseg.deploy.bundle import open_model\n"
        "from polypseg.errors import RunError\n"
        f"os.setgroups([]); os.setgid({CONTAINER_UID}); os.setuid({CONTAINER_UID})\n"
        "try:\n"
        "    open_model(sys.argv[1])\n"
        "except RunError as err:\n"
        "    sys.exit(f'error: {err}')\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]  # sys.exit(message)
    assert done.stderr.strip().startswith("error: cannot read the model at")
    assert "permission denied" in done.stderr and "Traceback" not in done.stderr


def test_a_killed_export_leaves_nothing_the_next_one_keeps(run_dir: Path, tmp_path: Path):
    """Temporaries of a killed export beside OUT are removed by the next export to OUT."""
    dead = dead_pid()
    half = tmp_path / f".state.{dead}.a1b2c3d4.tmp"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"half written")
    legacy = tmp_path / ".state.x9y8z7w6.tmp"  # older versions' name, no PID
    legacy.mkdir()
    other = tmp_path / f".other.{dead}.a1b2c3d4.tmp"  # another target's: not ours to judge
    other.mkdir()
    export_run(run_dir, "state", tmp_path / "state")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name, "state"])


def test_an_interrupted_overwrite_puts_the_old_export_back(run_dir: Path, tmp_path: Path):
    """Killed between setting the old export aside and moving the new one in: the next export
    finds OUT missing and the old one set aside, and restores it before anything else."""
    old = export_run(run_dir, "state", tmp_path / "state").out
    dead = dead_pid()
    aside = tmp_path / f".state.{dead}.old.tmp"
    os.replace(old, aside)
    with pytest.raises(Exception, match="already exists"):
        export_run(run_dir, "state", tmp_path / "state")
    assert (tmp_path / "state" / "export.json").is_file() and not aside.exists()
