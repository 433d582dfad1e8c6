"""Fixtures of the deployment tests: a tiny p4 run folder, its exports, and test images.

The run folder is made with ``zoo.create`` + ``save_checkpoint`` (no training): a p4 U-Net of
width 4 and depth 2 at a 64-pixel side, its batch-norm statistics moved off their defaults so
that parity checks compare something, and its threshold set to the median probability of a
test image so that masks hold both values.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from deploy_helpers import MEAN, SIDE, STD, encode, pattern


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with ``checkpoints/best.{safetensors,json}`` of a small p4 model."""
    import torch

    import zoo
    from polypseg.checkpoint import CheckpointMeta, InputSpec, ModelSpec, save_checkpoint
    from polypseg.inference import predict_probs

    torch.manual_seed(0)
    kwargs = {"in_channels": 3, "out_channels": 1, "width": 4, "depth": 2}
    model = zoo.create("p4", **kwargs)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, SIDE, SIDE) * 2 + 0.5)
    model.eval()
    image = cv2.resize(pattern(SIDE, SIDE), (SIDE, SIDE)).astype(np.float32) / 255.0
    x = torch.from_numpy(((image - MEAN) / STD).astype(np.float32)).permute(2, 0, 1)[None]
    threshold = float(predict_probs(model, x).median())
    run = tmp_path_factory.mktemp("run")
    meta = CheckpointMeta(
        model=ModelSpec.of(model),
        input=InputSpec(SIDE, tuple(MEAN), tuple(STD), threshold=threshold, depth=2),
        epoch=3,
        metrics={"dice": 0.42, "iou": 0.3},
    )
    save_checkpoint(run / "checkpoints" / "best", model, meta)
    return run


@pytest.fixture(scope="session")
def exports(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """TorchScript and ONNX export folders of :func:`run_dir` (made once per session)."""
    from polypseg.deploy.export import export_run

    root = tmp_path_factory.mktemp("exports")
    # The legacy ONNX exporter takes a fraction of a second where the default (dynamo, with a
    # fallback to legacy) takes 5-20 s here; docker/smoke.sh exports with the default.
    return {
        fmt: export_run(run_dir, fmt, root / fmt, onnx_exporter="legacy").out
        for fmt in ("torchscript", "onnx")
    }


@pytest.fixture()
def image_dir(tmp_path: Path) -> Path:
    """A folder with a PNG (70 x 50) and a JPEG (45 x 81) of odd sizes."""
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(encode(pattern(50, 70, 1)))
    (folder / "b.jpg").write_bytes(encode(pattern(81, 45, 2), ".jpg"))
    return folder
