"""Resume: interrupted + resumed training equals uninterrupted training.

Both runs apply the very same kernels to the same data in the same order, so on one machine
they agree to the bit. The comparisons allow float32 rounding (relative ``SAME`` = 1e-6) so
that they also hold where a library picks its kernels by memory layout or thread count; a wrong
resume is far outside it (one that drops the optimizer state moves a weight tensor by 0.015
relative; one that repeats a batch changes the batch-norm counters).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from interrupts import InterruptAt
from safetensors.torch import load_file

from polypseg.data import discover, make_split
from polypseg.errors import RunError
from polypseg.training import TrainConfig, train
from polypseg.training.logs import read_metrics_csv
from polypseg.training.state import load_resume_state, state_path

#: Relative tolerance of "the same run" (see the module docstring).
SAME = 1e-6


def _weights(run: Path, which: str = "last") -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"{which}.safetensors"))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Same keys; each float tensor within ``SAME`` of the other (relative to its max), the
    integer ones (batch counts) equal."""
    assert a.keys() == b.keys()
    for key in a:
        if not a[key].is_floating_point():
            assert torch.equal(a[key], b[key]), key
            continue
        scale = float(a[key].abs().max().clamp_min(1e-12))
        error = float((a[key] - b[key]).abs().max()) / scale
        assert error <= SAME, (key, error)


def test_interrupted_then_resumed_equals_uninterrupted(
    tiny_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    straight = train(tiny_config(out=str(tmp_path / "straight"), rot_aug=True))
    interrupted = tiny_config(out=str(tmp_path / "interrupted"), rot_aug=True)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, [InterruptAt(step=3)])  # mid-epoch 2 (2 steps per epoch)
    state = load_resume_state(state_path(interrupted.run_dir()))  # weights_only=True inside
    assert (state["epoch"], state["batches_done"], state["step"]) == (1, 1, 3)
    assert len(state["history"]) == 1
    resumed = train(tiny_config(out=str(tmp_path / "interrupted"), rot_aug=True, resume=True))

    assert_same_weights(_weights(straight), _weights(resumed))
    rows_a, rows_b = read_metrics_csv(straight / "metrics.csv"), read_metrics_csv(
        resumed / "metrics.csv"
    )
    assert [r["epoch"] for r in rows_b] == [1, 2]
    for row_a, row_b in zip(rows_a, rows_b, strict=True):
        assert row_a["step"] == row_b["step"]
        for key in ("train_loss", "val_loss", "val_dice", "lr"):
            assert row_b[key] == pytest.approx(row_a[key], rel=SAME), key


def test_sigint_stops_after_the_step_with_a_resumable_state(
    tiny_config: Callable[..., TrainConfig],
) -> None:
    config = tiny_config(epochs=1)
    # whatever this process had: the default handler, or SIG_IGN in a background job
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train(config, [InterruptAt(step=1, real_signal=True)])
    state = load_resume_state(state_path(config.run_dir()))
    assert (state["epoch"], state["batches_done"], state["step"]) == (0, 1, 1)
    assert not (config.run_dir() / "checkpoints" / "last.json").exists()  # no half epoch saved
    assert signal.getsignal(signal.SIGINT) is handler  # handler restored
    train(tiny_config(epochs=1, resume=True))
    assert len(read_metrics_csv(config.run_dir() / "metrics.csv")) == 1
    assert (config.run_dir() / "checkpoints" / "best.safetensors").is_file()


def test_resume_refuses_another_model_size_or_split(
    tiny_config: Callable[..., TrainConfig],
) -> None:
    config = tiny_config(epochs=1)
    train(config)
    with pytest.raises(RunError, match=r"variant.*p4.*unet"):
        train(tiny_config(epochs=2, variant="unet", resume=True))
    with pytest.raises(RunError, match="size: run has 32, now 64"):
        train(tiny_config(epochs=2, size=64, resume=True))
    other = make_split(discover(config.data), seed=7).save(config.run_dir().parent / "s7.json")
    with pytest.raises(RunError, match="split_sha256"):
        train(tiny_config(epochs=2, split_file=str(other), resume=True))
    with pytest.raises(RunError, match="already holds a run"):
        train(tiny_config(epochs=2))


def test_resume_without_state_is_a_clear_error(tiny_config: Callable[..., TrainConfig]) -> None:
    with pytest.raises(RunError, match="no resume state"):
        train(tiny_config(resume=True))


def test_resume_of_a_finished_run_does_nothing(tiny_config: Callable[..., TrainConfig]) -> None:
    run = train(tiny_config(epochs=1))
    before = _weights(run)
    train(tiny_config(epochs=1, resume=True))
    after = _weights(run)
    assert all(torch.equal(before[k], after[k]) for k in before)  # the file, untouched
