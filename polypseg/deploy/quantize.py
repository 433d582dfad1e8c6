"""int8 ONNX for serving: static quantisation calibrated on the run's own training images, and a
quality gate on its validation images instead of a parity check.

``polypseg export RUN --format onnx --quantize int8`` first exports and parity-checks the float
ONNX model as usual, then:

1. **calibration**: ``calibration_images`` training images of the run's split (evenly spaced
   over the training set), resized and normalised exactly as for serving, are run through the
   float model by ONNX Runtime's static quantiser (``quantize_static``: QDQ format, int8
   weights per output channel, uint8 activations, min-max ranges), after its pre-processing
   (shape inference and graph optimisation, ``quant_pre_process``);
2. **quality**: the float and the int8 model segment every image of the run's validation set
   (at most ``val_limit``), thresholded at the checkpoint's threshold; the per-image Dice and
   IoU (:mod:`polypseg.metrics`) are averaged; the int8 figures become the export's own
   ``metrics`` (:func:`int8_metrics`). If the int8 mean Dice is more than
   ``max_dice_drop`` (default 0.005: half a Dice point) below the float one, the export is
   refused with both numbers and nothing is written.

Both numbers, the calibration set and the quantiser settings go into ``export.json`` under
``quantization``. The split must be the run's own (``RUN/split.json``) and the images those of
the dataset the run was trained on (``--data``, else the one its ``config.json`` records).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polypseg.checkpoint import CheckpointMeta
from polypseg.deploy.quiet import quiet
from polypseg.errors import PolypsegError
from polypseg.options import ExportFormat, Quantization, look_up_option

#: Default quality gate: the int8 mean validation Dice may be at most this much lower.
DEFAULT_MAX_DICE_DROP = 0.005
#: Default number of training images that calibrate the activation ranges.
DEFAULT_CALIBRATION_IMAGES = 64
#: Images per calibration / evaluation batch.
BATCH = 8


class QuantizationError(PolypsegError):
    """The int8 model could not be made, or failed the quality gate; nothing was written."""


@dataclass
class SplitImages:
    """The run's calibration and validation images, ready for the model."""

    calibration: np.ndarray  # (N, 3, S, S) float32, normalised
    val_images: np.ndarray  # (M, 3, S, S) float32, normalised
    val_masks: torch.Tensor  # (M, 1, S, S) {0, 1}
    calibration_stems: list[str]
    data_dir: str


def _stack(pairs: list[Any], size: int, depth: int | None) -> tuple[np.ndarray, torch.Tensor]:
    from polypseg.training.datasets import eval_dataset, stack_dataset

    images, masks, _ = stack_dataset(eval_dataset(pairs, size, depth), batch_size=BATCH)
    return images.numpy().astype(np.float32), masks


def run_images(
    stem: Path,
    meta: CheckpointMeta,
    data: str | Path | None,
    calibration_images: int,
    val_limit: int | None,
) -> SplitImages:
    """Calibration (training set) and validation images of the run that saved checkpoint
    ``stem``; :class:`QuantizationError` when its split or dataset cannot be found.

    Args:
        stem: the checkpoint stem, ``RUN/checkpoints/NAME`` (its run folder holds the split).
        meta: the checkpoint's metadata (input size, depth, split hash).
        data: the run's dataset folder; ``None``: the one its ``config.json`` records.
        calibration_images: training images to calibrate on, evenly spaced over the training set.
        val_limit: at most this many validation images (the first); ``None``: all.
    """
    from polypseg.data import discover, load_split
    from polypseg.training.config import read_json_config
    from polypseg.training.datasets import subset_pairs

    run_dir = stem.parent.parent if stem.parent.name == "checkpoints" else None
    split_file = run_dir / "split.json" if run_dir is not None else None
    if split_file is None or not split_file.is_file():
        raise QuantizationError(
            f"--quantize needs the run's split (RUN/split.json) to calibrate on its training "
            f"images and check its validation Dice; none beside {stem}"
        )
    if data is None:
        config = run_dir / "config.json"
        data = read_json_config(config).get("data") if config.is_file() else None
        if not data:
            raise QuantizationError(
                f"{run_dir}: pass --data DIR (the dataset the run was trained on)"
            )
    split = load_split(split_file)
    if meta.split_sha256 and meta.split_sha256 != split.sha256():
        raise QuantizationError(f"{split_file} is not the split the checkpoint was trained on")
    index = discover(data)
    spec = meta.require_input(str(stem))
    size, depth = spec.size, spec.depth
    train_pairs = subset_pairs(index, split, "train")
    step = max(1, len(train_pairs) // max(1, calibration_images))
    chosen = train_pairs[::step][:calibration_images]
    calibration, _ = _stack(chosen, size, depth)
    val_images, val_masks = _stack(subset_pairs(index, split, "val", val_limit), size, depth)
    return SplitImages(calibration, val_images, val_masks, [p.stem for p in chosen], str(data))


def _batches(images: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(images), BATCH):
        yield images[start : start + BATCH]


def quantize_int8(float_onnx: Path, out: Path, calibration: np.ndarray) -> dict[str, Any]:
    """Write the statically quantised int8 (QDQ) version of ``float_onnx`` to ``out``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = _batches(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {_input_name(float_onnx): batch}

    prepared = out.with_name(out.stem + ".prepared.onnx")
    settings = {
        "format": "QDQ",
        "weights": "int8, per output channel, symmetric",
        "activations": "uint8, per tensor",
        "calibration_method": "MinMax",
    }
    try:
        with quiet():  # the quantiser logs on the root logger
            quant_pre_process(str(float_onnx), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                calibrate_method=CalibrationMethod.MinMax,
            )
    except Exception as err:  # the quantiser raises many types
        first = (str(err).strip().splitlines() or [""])[0]
        raise QuantizationError(f"int8 quantisation failed: {type(err).__name__}: {first}") from err
    finally:
        prepared.unlink(missing_ok=True)
        for leftover in out.parent.glob("augmented_model*.onnx"):
            leftover.unlink(missing_ok=True)
    return settings


def _input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def mean_scores(
    module: nn.Module, images: np.ndarray, masks: torch.Tensor, threshold: float
) -> dict[str, float]:
    """Mean per-image Dice and IoU of ``module``'s masks (probabilities >= ``threshold``).

    Args:
        module: ``(B, 3, S, S)`` -> ``(B, 1, S, S)`` logits.
        images: ``(N, 3, S, S)`` normalised ``float32``.
        masks: ``(N, 1, S, S)`` ``{0, 1}``.
        threshold: the probability at and above which a pixel is foreground.
    """
    from polypseg.metrics import binarize, dice, iou

    dices, ious = [], []
    with torch.no_grad():
        for start in range(0, len(images), BATCH):
            logits = module(torch.from_numpy(images[start : start + BATCH]))
            preds = binarize(torch.sigmoid(logits.float()), threshold)
            target = masks[start : start + BATCH]
            dices.append(dice(preds, target))
            ious.append(iou(preds, target))
    return {"dice": float(torch.cat(dices).mean()), "iou": float(torch.cat(ious).mean())}


def quality_gate(
    float_module: nn.Module,
    int8_module: nn.Module,
    images: SplitImages,
    threshold: float,
    max_dice_drop: float,
) -> dict[str, Any]:
    """Both models' mean validation Dice and IoU; :class:`QuantizationError` if int8 loses too
    much Dice.

    Args:
        float_module: the float model, ``(B, 3, S, S)`` -> ``(B, 1, S, S)`` logits.
        int8_module: its quantised version, the same shapes.
        images: the run's validation images and masks.
        threshold: probability threshold of the masks.
        max_dice_drop: the largest drop of mean Dice (float minus int8) accepted.
    """
    floats = mean_scores(float_module, images.val_images, images.val_masks, threshold)
    int8s = mean_scores(int8_module, images.val_images, images.val_masks, threshold)
    float_dice, int8_dice = floats["dice"], int8s["dice"]
    quality = {
        "split": "val",
        "images": len(images.val_images),
        "threshold": threshold,
        "float_dice": float_dice,
        "int8_dice": int8_dice,
        "float_iou": floats["iou"],
        "int8_iou": int8s["iou"],
        "dice_drop": float_dice - int8_dice,
        "max_dice_drop": max_dice_drop,
    }
    if float_dice - int8_dice > max_dice_drop:
        raise QuantizationError(
            f"int8 quality check failed: mean validation Dice {int8_dice:.4f} against "
            f"{float_dice:.4f} for the float model ({len(images.val_images)} images), a drop of "
            f"{100 * (float_dice - int8_dice):.2f} points > {100 * max_dice_drop:.2f}; nothing "
            "was written (export float ONNX instead, or allow more with --max-dice-drop)"
        )
    return quality


def int8_metrics(quantization: dict[str, Any]) -> dict[str, float]:
    """The int8 model's own validation metrics, from the ``quantization`` entry of
    ``export.json`` (the ``metrics`` an int8 export reports, not its checkpoint's)."""
    quality = quantization["quality"]
    metrics = {"val_dice": quality["int8_dice"]}
    if quality.get("int8_iou") is not None:
        metrics["val_iou"] = quality["int8_iou"]
    return metrics


def check_options(
    fmt: ExportFormat, scheme: Quantization | str | None, max_dice_drop: float, calibration: int
) -> Quantization | None:
    """The quantisation ``scheme`` names (``None`` for none); :class:`QuantizationError` for
    options that cannot apply, before any work.

    Args:
        fmt: the export format (only ONNX can be quantised).
        scheme: the scheme (``int8``) or its string; ``None``: no quantisation.
        max_dice_drop: the gate's largest drop of Dice, in [0, 1].
        calibration: calibration images (at least 1).
    """
    if scheme is None:
        return None
    scheme = look_up_option(scheme, Quantization, "quantisation", error=QuantizationError)
    if fmt is not ExportFormat.ONNX:
        raise QuantizationError(f"--quantize {scheme} needs --format onnx (got {fmt})")
    if not 0 <= max_dice_drop <= 1:
        raise QuantizationError(f"--max-dice-drop must lie in [0, 1], got {max_dice_drop}")
    if calibration < 1:
        raise QuantizationError(f"--calibration-images must be >= 1, got {calibration}")
    return scheme


def make_int8(
    artifact: Path,
    stem: Path,
    meta: CheckpointMeta,
    float_module: nn.Module,
    *,
    data: str | Path | None,
    calibration_images: int,
    val_limit: int | None,
    max_dice_drop: float,
) -> dict[str, Any]:
    """Replace the float ONNX ``artifact`` by its int8 version if it passes the quality gate;
    return the ``quantization`` entry of ``export.json`` (raises before replacing otherwise).

    Args:
        artifact: the float ``model.onnx`` in the export's temporary folder, replaced in place.
        stem: the checkpoint stem it was exported from.
        meta: that checkpoint's metadata.
        float_module: the float artifact, loaded, for the gate.
        data: the run's dataset folder; ``None``: the recorded one.
        calibration_images: training images to calibrate on.
        val_limit: at most this many validation images for the gate; ``None``: all.
        max_dice_drop: the gate's largest drop of mean validation Dice.
    """
    import os

    from polypseg.deploy.bundle import OnnxModule

    images = run_images(stem, meta, data, calibration_images, val_limit)
    int8_path = artifact.with_name(artifact.stem + ".int8.onnx")
    settings = quantize_int8(artifact, int8_path, images.calibration)
    threshold = meta.require_input(str(stem)).threshold
    quality = quality_gate(float_module, OnnxModule(int8_path), images, threshold, max_dice_drop)
    os.replace(int8_path, artifact)
    return {
        "scheme": Quantization.INT8.value,
        "tool": "onnxruntime.quantization.quantize_static",
        **settings,
        "calibration": {
            "split": "train",
            "images": len(images.calibration),
            "stems": images.calibration_stems,
        },
        "data": Path(images.data_dir).name,
        "quality": quality,
    }
