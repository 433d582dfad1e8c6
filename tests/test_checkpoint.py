"""Checkpoints: safetensors + JSON round trip, and a clear error for anything that does not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import zoo
from polypseg.checkpoint import (
    load_checkpoint,
    read_meta,
    resolve_checkpoint,
    save_checkpoint,
)
from polypseg.errors import ModelError, RunError

KWARGS = {"in_channels": 3, "out_channels": 1, "width": 2, "depth": 2}


def _save(stem: Path, variant: str = "p4", **kwargs: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = zoo.create(variant, **{**KWARGS, **kwargs})
    save_checkpoint(stem, model, {"variant": variant, "model": {**KWARGS, **kwargs}})
    return model


def test_round_trip_gives_the_same_outputs(tmp_path: Path) -> None:
    model = _save(tmp_path / "ckpt" / "best").eval()
    loaded, meta = load_checkpoint(tmp_path / "ckpt" / "best")
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert meta["variant"] == "p4" and len(meta["weights_sha256"]) == 64
    assert resolve_checkpoint(tmp_path / "ckpt" / "best.safetensors") == tmp_path / "ckpt" / "best"


def test_another_variant_is_refused_by_name(tmp_path: Path) -> None:
    _save(tmp_path / "best", "p4")
    with pytest.raises(ModelError, match="holds variant 'p4', not 'unet'"):
        load_checkpoint(tmp_path / "best", expected_variant="unet")


def test_weights_of_another_width_are_a_clear_error(tmp_path: Path) -> None:
    _save(tmp_path / "best", "p4", width=3)
    meta = json.loads((tmp_path / "best.json").read_text())
    meta["model"]["width"] = 2  # metadata and tensors disagree
    (tmp_path / "best.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="another shape"):
        load_checkpoint(tmp_path / "best")


def test_corrupt_weights_and_foreign_json_are_clear_errors(tmp_path: Path) -> None:
    _save(tmp_path / "best")
    (tmp_path / "best.safetensors").write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(ModelError, match="unreadable checkpoint weights"):
        load_checkpoint(tmp_path / "best")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(RunError, match="not a polypseg checkpoint"):
        read_meta(tmp_path / "other")


def test_missing_run_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no such run folder"):
        resolve_checkpoint(tmp_path / "nope")
    (tmp_path / "run").mkdir()
    with pytest.raises(RunError, match="no 'best' checkpoint"):
        resolve_checkpoint(tmp_path / "run")
