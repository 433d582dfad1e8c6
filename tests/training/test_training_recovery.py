"""Run folders after a kill: resumable from the last consistent point, saying what was lost.

A kill is emulated by an exception raised inside a checkpoint write (the files on disk are
then what ``kill -9`` at that moment leaves), or by deleting the files written after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import polypseg.checkpoint
from polypseg.errors import RunError
from polypseg.training import TrainConfig, train
from polypseg.training.logs import read_metrics_csv
from polypseg.training.state import load_resume_state, state_path


class Killed(Exception):
    """Stands for SIGKILL: nothing after it runs."""


def kill_at_checkpoint_of_epoch(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    """Make the first checkpoint write of ``epoch`` raise :class:`Killed`."""
    real = polypseg.checkpoint.save_checkpoint

    def save(stem, model, meta):
        if meta.epoch == epoch:
            raise Killed
        return real(stem, model, meta)

    monkeypatch.setattr(polypseg.checkpoint, "save_checkpoint", save)


def checkpoint_epoch(run: Path, which: str) -> int:
    return json.loads((run / "checkpoints" / f"{which}.json").read_text())["epoch"]


def test_killed_before_the_first_resume_state_resumes_from_epoch_1(
    tiny_config: Callable[..., TrainConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's reproduction: checkpoints of epoch 1 but no last_state.pt (an older version
    wrote the state last). A fresh train points to --resume; --resume starts again."""
    run = train(tiny_config(epochs=1))
    state_path(run).unlink()
    with pytest.raises(RunError, match="--resume"):
        train(tiny_config(epochs=2))
    train(tiny_config(epochs=2, resume=True, quiet=False, progress=False))
    out = capsys.readouterr().out
    assert "holds no resume state" in out and "from epoch 1" in out
    assert [row["epoch"] for row in read_metrics_csv(run / "metrics.csv")] == [1, 2]
    assert checkpoint_epoch(run, "last") == 2 and load_resume_state(state_path(run))["epoch"] == 2


def test_the_resume_state_is_written_before_the_checkpoints(
    tiny_config: Callable[..., TrainConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed in epoch 1 while writing checkpoints: the state of epoch 1 is already there."""
    kill_at_checkpoint_of_epoch(monkeypatch, 1)
    with pytest.raises(Killed):
        train(tiny_config(epochs=2))
    run = tiny_config().run_dir()
    assert load_resume_state(state_path(run))["epoch"] == 1
    monkeypatch.undo()
    train(tiny_config(epochs=2, resume=True))
    assert [row["epoch"] for row in read_metrics_csv(run / "metrics.csv")] == [1, 2]
    assert checkpoint_epoch(run, "last") == 2


def test_resume_rewrites_the_checkpoints_a_kill_left_behind(
    tiny_config: Callable[..., TrainConfig],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Killed after the state of the last epoch: resume has nothing to train, but rewrites
    last (and best), and metrics.csv, from the state."""
    kill_at_checkpoint_of_epoch(monkeypatch, 2)
    with pytest.raises(Killed):
        train(tiny_config(epochs=2))
    run = tiny_config().run_dir()
    assert checkpoint_epoch(run, "last") == 1
    assert len(read_metrics_csv(run / "metrics.csv")) == 1
    monkeypatch.undo()
    state = load_resume_state(state_path(run))
    train(tiny_config(epochs=2, resume=True, quiet=False, progress=False))
    out = capsys.readouterr().out
    assert "stopped while writing epoch 2's files" in out and "nothing was lost" in out
    assert checkpoint_epoch(run, "last") == 2
    weights = load_file(str(run / "checkpoints" / "last.safetensors"))
    assert all(torch.equal(weights[k], state["model"][k]) for k in weights)
    assert checkpoint_epoch(run, "best") == state["best_epoch"]
    assert [row["epoch"] for row in read_metrics_csv(run / "metrics.csv")] == [1, 2]


def test_temporaries_of_interrupted_writes_are_removed_on_resume(
    tiny_config: Callable[..., TrainConfig],
) -> None:
    run = train(tiny_config(epochs=1))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    leftovers = [
        run / "checkpoints" / f".last.safetensors.{dead}.a1b2c3d4.tmp",
        run / "checkpoints" / ".last_state.pt.q9w8e7r6.tmp",  # an older version's name
        run / f".metrics.csv.{dead}.z1x2c3v4.tmp",
    ]
    for path in leftovers:
        path.write_bytes(b"half written")
    train(tiny_config(epochs=1, resume=True))
    assert not any(path.exists() for path in leftovers)
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_resume_state_never_suggests_unpickling(
    tiny_config: Callable[..., TrainConfig], damage: str
) -> None:
    run = train(tiny_config(epochs=1))
    path = state_path(run)
    data = path.read_bytes()
    path.write_bytes(b"not a torch file" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(RunError) as caught:
        train(tiny_config(epochs=2, resume=True))
    message = str(caught.value)
    assert "corrupt or truncated" in message and str(path) in message
    assert "weights_only" not in message and "pickle" not in message.lower()
    assert os.linesep not in message
