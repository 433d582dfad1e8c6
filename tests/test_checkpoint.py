"""Checkpoints: safetensors + JSON round trip, and a clear error for anything that does not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import zoo
from polypseg.checkpoint import (
    FORMAT,
    CheckpointMeta,
    InputSpec,
    ModelSpec,
    load_checkpoint,
    load_into,
    load_weights,
    read_meta,
    resolve_checkpoint,
    save_checkpoint,
)
from polypseg.errors import ModelError, RunError

KWARGS = {"in_channels": 3, "out_channels": 1, "width": 2, "depth": 2}


def _save(stem: Path, variant: str = "p4", **kwargs: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = zoo.create(variant, **{**KWARGS, **kwargs})
    save_checkpoint(stem, model, CheckpointMeta(ModelSpec.of(model)))
    return model


def test_round_trip_gives_the_same_outputs(tmp_path: Path) -> None:
    model = _save(tmp_path / "ckpt" / "best").eval()
    loaded, meta = load_checkpoint(tmp_path / "ckpt" / "best")
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert meta.variant == "p4" and len(meta.weights_sha256 or "") == 64
    assert resolve_checkpoint(tmp_path / "ckpt" / "best.safetensors") == tmp_path / "ckpt" / "best"


def test_another_variant_is_refused_by_name(tmp_path: Path) -> None:
    _save(tmp_path / "best", "p4")
    with pytest.raises(ModelError, match="holds variant 'p4', not 'unet'"):
        load_checkpoint(tmp_path / "best", expected_variant="unet")


def test_weights_of_another_width_are_a_clear_error(tmp_path: Path) -> None:
    _save(tmp_path / "best", "p4", width=3)
    meta = json.loads((tmp_path / "best.json").read_text())
    meta["model_config"]["width"] = 2  # metadata and tensors disagree
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


FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint-v1.json"
COMMITTED = sorted((Path(__file__).parents[1] / "results").glob("**/checkpoints/best.json"))


def _renamed(raw: dict) -> dict:
    """``raw`` with the model config under the key this version writes."""
    return {("model_config" if k == "model" else k): v for k, v in raw.items()}


@pytest.mark.parametrize("path", [FIXTURE, *COMMITTED], ids=lambda p: p.parent.parent.name)
def test_committed_metadata_reads_and_writes_back_unchanged(path: Path) -> None:
    """Only the model config's key changes on a rewrite (``model`` -> ``model_config``); a
    file this version wrote (a run calibrated since, say) comes back as it is."""
    raw = json.loads(path.read_text())
    config = raw["model_config"] if "model_config" in raw else raw["model"]
    meta = CheckpointMeta.from_json(raw, str(path))
    assert meta.variant == raw["variant"] and meta.model.config == config
    spec = meta.require_input(str(path))
    assert (spec.size, spec.depth, spec.threshold) == (
        raw["input"]["size"], config["depth"], raw["threshold"])
    assert list(spec.mean) == raw["input"]["mean"] and not spec.pad
    assert meta.metrics == raw["metrics"] and meta.split == raw["split"] and not meta.extra
    written = meta.to_json()
    assert written == _renamed(raw) and "model" not in written
    assert CheckpointMeta.from_json(written, str(path)) == meta


def test_the_model_config_key_wins_over_the_old_one() -> None:
    raw = {"format": FORMAT, "variant": "unet", "model_config": {"depth": 3},
           "model": {"depth": 2}, "input": {"size": 16, "mean": [0.5] * 3, "std": [0.5] * 3}}
    meta = CheckpointMeta.from_json(raw, "x.json")
    assert meta.model.config == {"depth": 3} and meta.require_input("x.json").depth == 3
    assert "model" not in meta.to_json() and not meta.extra


def test_metadata_without_input_keeps_what_it_has_and_says_what_it_lacks() -> None:
    raw = {"format": FORMAT, "variant": "unet", "model": {}, "input": {"size": 8},
           "threshold": 0.4, "note": "hand-made"}
    meta = CheckpointMeta.from_json(raw, "x.json")
    assert meta.input is None and meta.extra == {"input": {"size": 8}, "threshold": 0.4,
                                                 "note": "hand-made"}
    with pytest.raises(RunError, match=r"x\.json: checkpoint metadata lacks input size/mean/std"):
        meta.require_input("x.json")
    assert meta.to_json() == _renamed(raw)
    with pytest.raises(RunError, match="lacks 'model_config'"):
        CheckpointMeta.from_json({"format": FORMAT, "variant": "unet"}, "y.json")
    with pytest.raises(RunError, match="not a polypseg checkpoint"):
        CheckpointMeta.from_json([], "z.json")


def test_input_depth_is_the_model_depth() -> None:
    spec = ModelSpec("p4", {"in_channels": 3, "out_channels": 1, "width": 1, "depth": 2})
    with pytest.raises(ValueError, match="depth"):
        CheckpointMeta(spec, InputSpec(size=16, mean=(0.5,) * 3, std=(0.5,) * 3, depth=3))
    meta = CheckpointMeta(spec, InputSpec(size=16, mean=(0.5,) * 3, std=(0.5,) * 3, pad=True,
                                          threshold=0.3, depth=2), epoch=1)
    assert CheckpointMeta.from_json(meta.to_json(), "m.json") == meta
    assert meta.to_json()["input"]["pad"] is True
    # a spec recorded before the head norm rebuilds a model without one, and says so now
    assert ModelSpec.of(spec.build()) == ModelSpec("p4", {**spec.config, "head_norm": False})


def test_a_run_folder_of_an_earlier_version_opens_for_prediction(tmp_path: Path) -> None:
    """The fixture's STEM.json (the structure of a committed best.json) beside the weights of
    a tiny model, written as that version did: every reader opens it through the record."""
    from safetensors.torch import save_file

    from polypseg.deploy.bundle import open_model
    from polypseg.opened import open_run

    raw = json.loads(FIXTURE.read_text())
    torch.manual_seed(0)
    model = zoo.from_config({"variant": raw["variant"], **raw["model"]})  # as recorded then
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / "best.safetensors"))
    (folder / "best.json").write_text(FIXTURE.read_text())
    loaded = open_run(tmp_path / "run")
    assert (loaded.variant, loaded.size, loaded.depth, loaded.threshold) == ("p4", 16, 2, 0.5)
    assert loaded.checkpoint.epoch == 20 and loaded.checkpoint.params == raw["params"]
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model.eval()(x), rtol=1e-5, atol=1e-6)
    bundle = open_model(tmp_path / "run")
    assert (bundle.size, bundle.mean, bundle.pad) == (16, tuple(raw["input"]["mean"]), False)
    assert bundle.info()["model"] == raw["model"] and bundle.info()["metrics"] == raw["metrics"]


def test_load_into_keeps_the_model_mode_also_when_it_refuses(tmp_path: Path) -> None:
    model = _save(tmp_path / "best", "p4")
    state = load_weights(tmp_path / "best")
    for training in (False, True):
        model.train(training)
        load_into(model, state)
        assert model.training is training
        with pytest.raises(ModelError, match="1 missing"):
            load_into(model, {k: v for k, v in list(state.items())[1:]})
        assert model.training is training  # not left in train mode by the refusal


def test_decision_thresholds_round_trip_through_the_metadata(tmp_path: Path) -> None:
    from dataclasses import replace

    from polypseg.checkpoint import write_meta
    from polypseg.decision import polyp_present

    stem = tmp_path / "ckpt" / "best"
    _save(stem)
    assert read_meta(stem).decision is None
    weights = stem.with_suffix(".safetensors").read_bytes()
    decision = {"min_area_fraction": 0.0123, "min_peak_probability": 0.875,
                "target_specificity": 0.95, "pixel_threshold": 0.5, "source": "validation"}
    write_meta(stem, replace(read_meta(stem), decision=decision))
    meta = read_meta(stem)
    assert meta.decision == decision
    assert json.loads(stem.with_suffix(".json").read_text())["decision"] == decision
    assert stem.with_suffix(".safetensors").read_bytes() == weights  # weights untouched
    assert meta.weights_sha256 == read_meta(stem).weights_sha256
    # a rewrite keeps it, and it is the rule applied: 1% at 0.9 passes the default, not it
    assert CheckpointMeta.from_json(meta.to_json(), "again").decision == decision
    prob = torch.full((100, 100), 0.1)
    prob[:10, :10] = 0.9
    assert polyp_present(prob.numpy()) and not polyp_present(prob.numpy(), meta.decision)
