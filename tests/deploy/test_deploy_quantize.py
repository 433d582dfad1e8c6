"""``polypseg export --format onnx --quantize int8``: calibration on the run's training images,
the validation-Dice gate, and an int8 artifact that loads and serves like any ONNX export."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from polypseg.checkpoint import read_meta, resolve_checkpoint
from polypseg.cli import main
from polypseg.deploy import quantize as quant
from polypseg.deploy.bundle import EXPORT_META, open_model
from polypseg.deploy.export import parity_input


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder trained for one short epoch on synthetic polyps (split.json, config)."""
    from polypseg.training import TrainConfig, train
    from polypseg.training.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("quant")
    data = make_synthetic(root / "polyps", n=24, size=48)
    config = TrainConfig(variant="p4", data=str(data), out=str(root / "run"), epochs=1,
                         batch_size=4, size=32, width=2, depth=2, device="cpu", quiet=True)
    return train(config)


def _export(run: Path, out: Path, *extra: str) -> int:
    return main(["export", str(run), "--format", "onnx", "--onnx-exporter", "legacy",
                 "--out", str(out), "--quantize", "int8", "--calibration-images", "8", *extra])


def test_int8_export_is_quantised_gated_and_serves(trained_run: Path, tmp_path: Path) -> None:
    import onnx

    out = tmp_path / "int8"
    assert _export(trained_run, out, "--max-dice-drop", "1") == 0
    meta = json.loads((out / EXPORT_META).read_text())
    quantization = meta["quantization"]
    assert quantization["scheme"] == "int8" and quantization["format"] == "QDQ"
    assert quantization["calibration"]["split"] == "train"
    assert len(quantization["calibration"]["stems"]) == quantization["calibration"]["images"]
    quality = quantization["quality"]
    assert quality["split"] == "val" and quality["images"] > 0
    assert 0 <= quality["int8_dice"] <= 1 and 0 <= quality["float_dice"] <= 1
    assert quality["dice_drop"] == pytest.approx(quality["float_dice"] - quality["int8_dice"])
    ops = {node.op_type for node in onnx.load(str(out / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [EXPORT_META, "model.onnx", "README.md"])
    bundle = open_model(out)
    with torch.no_grad():
        assert bundle.model(parity_input(32, batch=3)).shape == (3, 1, 32, 32)
    # its own identity and its own measured metrics, not the float checkpoint's
    assert meta["precision"] == "int8"
    float_id = open_model(trained_run).model_id
    assert bundle.model_id == meta["model_id"] == f"{float_id}-int8-{meta['sha256'][:8]}"
    assert meta["metrics"] == {"val_dice": quality["int8_dice"], "val_iou": quality["int8_iou"]}
    checkpoint = read_meta(resolve_checkpoint(trained_run))
    assert meta["source"]["metrics"] == checkpoint.metrics  # the float model's, kept apart
    assert "int8" in meta["card"]["metrics_from"]
    assert f"{quality['int8_dice']:.4f}" in (out / "README.md").read_text()
    # served: the int8 id on every mask, its precision and its own metrics on /v1/model
    with warnings.catch_warnings():  # starlette's TestClient warns about httpx at import
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from polypseg.deploy.server import create_app

    with TestClient(create_app(bundle, warm_up=False)) as client:
        info = client.get("/v1/model").json()
        assert (info["format"], info["precision"]) == ("onnx", "int8")
        assert info["model_id"] == meta["model_id"] and info["metrics"] == meta["metrics"]
        image = np.zeros((40, 40, 3), np.uint8)
        response = client.post("/v1/segment", content=cv2.imencode(".png", image)[1].tobytes())
        assert response.headers["x-model-id"] == meta["model_id"]


def test_int8_metrics_are_measured_on_the_int8_model(trained_run: Path) -> None:
    """The Dice and IoU of the quality check are those of the module given, computed per
    image: a module that predicts every pixel scores the masks' own foreground share."""
    stem = resolve_checkpoint(trained_run)
    images = quant.run_images(stem, read_meta(stem), None, 4, None)

    class Everything(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0], 1, *x.shape[2:]), 10.0)

    scores = quant.mean_scores(Everything(), images.val_images, images.val_masks, 0.5)
    share = images.val_masks.float().mean(dim=(1, 2, 3))
    expected_dice = (2 * share / (1 + share)).mean().item()
    assert scores["dice"] == pytest.approx(expected_dice, abs=1e-5)
    assert scores["iou"] == pytest.approx(share.mean().item(), abs=1e-5)


def test_a_failed_quality_gate_writes_nothing(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    real = quant.mean_scores
    calls = []

    def int8_loses(module, images, masks, threshold):  # second call: the int8 model
        calls.append(module)
        scores = real(module, images, masks, threshold)
        return {**scores, "dice": scores["dice"] - (0.2 if len(calls) == 2 else 0.0)}

    monkeypatch.setattr(quant, "mean_scores", int8_loses)
    out = tmp_path / "refused"
    assert _export(trained_run, out) == 2
    err = capsys.readouterr().err
    assert "int8 quality check failed" in err and "nothing was written" in err
    assert not out.exists()
    assert not any(p.name.startswith(".refused") for p in tmp_path.iterdir())


def test_quantize_needs_onnx_and_the_runs_split(
    trained_run: Path, tmp_path: Path, capsys
) -> None:
    assert main(["export", str(trained_run), "--format", "torchscript", "--out",
                 str(tmp_path / "ts"), "--quantize", "int8"]) == 2
    assert "needs --format onnx" in capsys.readouterr().err
    bare = tmp_path / "bare"  # a checkpoint without its run folder: no split to calibrate on
    (bare / "checkpoints").mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        src = trained_run / "checkpoints" / f"best{suffix}"
        (bare / "checkpoints" / f"best{suffix}").write_bytes(src.read_bytes())
    assert _export(bare, tmp_path / "x") == 2
    assert "needs the run's split" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
