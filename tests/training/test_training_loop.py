"""The run folder that training writes, its checkpoints and logs, and early stopping."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from polypseg.checkpoint import load_checkpoint, read_meta
from polypseg.data import load_split
from polypseg.errors import DataError, ModelError
from polypseg.training import TrainConfig, train
from polypseg.training.logs import CSV_COLUMNS, read_metrics_csv
from polypseg.training.loop import _Trainer


def test_run_folder_layout_checkpoints_and_logs(tiny_config: Callable[..., TrainConfig]) -> None:
    run = train(tiny_config(variant="unet"))
    for name in ("config.json", "split.json", "metrics.csv", "checkpoints/best.safetensors",
                 "checkpoints/best.json", "checkpoints/last.safetensors", "checkpoints/last.json",
                 "checkpoints/last_state.pt"):
        assert (run / name).is_file(), name
    assert any((run / "tb").glob("events.out.tfevents.*"))
    rows = read_metrics_csv(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2] and [r["step"] for r in rows] == [2, 4]
    assert set(CSV_COLUMNS) <= set(rows[0])
    config = json.loads((run / "config.json").read_text())
    assert config["variant"] == "unet" and config["resolved_model"]["width"] == 2
    split = load_split(run / "split.json")  # the default split, saved in the run
    assert split.seed == 0 and split.dataset == "kvasir-seg"

    meta = json.loads((run / "checkpoints" / "last.json").read_text())  # the format on disk
    assert meta["variant"] == "unet" and meta["epoch"] == 2
    assert meta["input"]["size"] == 32 and len(meta["input"]["mean"]) == 3
    assert meta["threshold"] == 0.5 and meta["split_sha256"] == split.sha256()
    assert set(meta["metrics"]) == {"train_loss", "val_loss", "val_dice"}
    assert meta["args"]["limit_train"] == 4 and "torch" in meta["versions"]
    record = read_meta(run / "checkpoints" / "last")
    assert record.to_json() == meta and record.require_input("last").depth == 2
    model, _ = load_checkpoint(run / "checkpoints" / "best", expected_variant="unet")
    assert not model.training


def test_split_file_is_copied_and_independent_of_the_model_seed(
    tiny_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    a = train(tiny_config(out=str(tmp_path / "a"), epochs=1, seed=1))
    b = train(tiny_config(out=str(tmp_path / "b"), epochs=1, seed=2,
                          split_file=str(a / "split.json")))
    assert (a / "split.json").read_bytes() == (b / "split.json").read_bytes()
    c = train(tiny_config(out=str(tmp_path / "c"), epochs=1, seed=3))
    assert load_split(c / "split.json").sha256() == load_split(a / "split.json").sha256()


def test_early_stopping_after_patience_epochs(
    tiny_config: Callable[..., TrainConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Trainer, "_validate", lambda self: (0.5, 1.0))  # never improves
    run = train(tiny_config(epochs=6, patience=2))
    rows = read_metrics_csv(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # best at 1, then 2 epochs without gain
    assert read_meta(run / "checkpoints" / "best").epoch == 1


def test_min_epochs_keeps_a_flat_start_training_then_patience_stops_it(
    tiny_config: Callable[..., TrainConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Trainer, "_validate", lambda self: (0.5, 1.0))  # never improves
    run = train(tiny_config(epochs=8, patience=2, min_epochs=5))
    rows = read_metrics_csv(run / "metrics.csv")
    # patience alone stops after epoch 3; the warm-up holds the stop until epoch 5
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    assert read_meta(run / "checkpoints" / "best").epoch == 1


def test_a_run_stopped_early_continues_under_min_epochs_as_if_trained_under_it(
    tiny_config: Callable[..., TrainConfig], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Resuming an early-stopped run with a larger ``min_epochs`` trains the epochs the new
    rule adds, to the same weights as a run trained under the new rule from the start."""
    import torch
    from safetensors.torch import load_file

    monkeypatch.setattr(_Trainer, "_validate", lambda self: (0.5, 1.0))
    stopped = train(tiny_config(out=str(tmp_path / "a"), epochs=6, patience=1))
    assert len(read_metrics_csv(stopped / "metrics.csv")) == 2
    continued = train(tiny_config(out=str(tmp_path / "a"), epochs=6, patience=1,
                                  min_epochs=4, resume=True))
    direct = train(tiny_config(out=str(tmp_path / "b"), epochs=6, patience=1, min_epochs=4))
    assert [r["epoch"] for r in read_metrics_csv(continued / "metrics.csv")] == [1, 2, 3, 4]
    a = load_file(str(continued / "checkpoints" / "last.safetensors"))
    b = load_file(str(direct / "checkpoints" / "last.safetensors"))
    assert a.keys() == b.keys()
    for key in a:  # two computations (resumed vs straight through): equal to float rounding
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5, rtol=1e-4), key


def test_bad_model_and_data_are_user_errors(
    tiny_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    with pytest.raises(ModelError, match=r"unknown model 'resnet'.*available: .*p4"):
        train(tiny_config(variant="resnet"))
    with pytest.raises(DataError, match="no such folder"):
        train(tiny_config(data=str(tmp_path / "missing")))


def test_epoch_repeats_give_a_small_set_the_steps_of_a_larger_one(tiny_config, tmp_path) -> None:
    """4 training images, batch 2: an epoch is 2 optimiser steps, with 3 repeats 6 (each image
    drawn 3 times), and the cosine schedule spans the longer epochs."""
    from polypseg.errors import RunError

    plain = tiny_config(out=str(tmp_path / "plain"), epochs=1)
    repeated = tiny_config(out=str(tmp_path / "repeated"), epochs=1, epoch_repeats=3)
    train(plain)
    train(repeated)
    steps = [read_metrics_csv(tmp_path / name / "metrics.csv")[-1]["step"]
             for name in ("plain", "repeated")]
    assert steps == [2, 6]
    with pytest.raises(RunError, match="epoch_repeats"):
        tiny_config(epoch_repeats=0).validate()
