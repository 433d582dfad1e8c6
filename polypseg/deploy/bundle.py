"""Export folders opened for inference: :func:`open_export`, and :func:`open_model` for a path
that is either an export folder or a run folder / checkpoint stem. Both return the one
opened-model type, :class:`~polypseg.opened.OpenedModel`: a callable torch module,
``(B, 3, S, S)`` normalised ``float32`` to ``(B, 1, S, S)`` logits, with the metadata that says
how to feed it (size ``S``, mean/std, threshold). Sources:

* a run folder or checkpoint stem (:func:`~polypseg.checkpoint.resolve_checkpoint`): the zoo
  model is rebuilt from safetensors and frozen with ``model.export()`` (needs ``zoo``;
  :func:`polypseg.opened.open_run`);
* an export folder (``export.json`` + ``model.pt`` | ``model.onnx`` | ``model.safetensors``)
  written by :mod:`polypseg.deploy.export`. TorchScript and ONNX need neither ``zoo`` nor
  ``e2cnn``; ONNX runs on onnxruntime through :class:`OnnxModule`; "state" rebuilds the plain
  module through ``zoo`` and loads safetensors.

No pickle is ever read: checkpoints and "state" exports are safetensors, and the TorchScript
and ONNX artifacts are checked against the SHA-256 recorded in ``export.json`` before loading.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polypseg.checkpoint import InputSpec, ModelSpec
from polypseg.errors import ModelError, RunError
from polypseg.opened import OpenedModel, frozen, model_id_of, open_run
from polypseg.options import ExportFormat

#: ``export.json``'s format tag.
EXPORT_FORMAT = "polypseg-export/1"
#: Name of the metadata file of an export folder.
EXPORT_META = "export.json"
#: Artifact file name per export format (keys equal their strings: ``ARTIFACTS["onnx"]``).
ARTIFACTS: dict[ExportFormat, str] = {
    ExportFormat.TORCHSCRIPT: "model.pt",
    ExportFormat.ONNX: "model.onnx",
    ExportFormat.STATE: "model.safetensors",
}
#: ONNX graph input and output names.
ONNX_INPUT, ONNX_OUTPUT = "image", "logits"


class OnnxModule(nn.Module):
    """An onnxruntime session behind the torch module interface (CPU, ``float32``).

    ``forward`` is thread-safe: onnxruntime sessions allow concurrent ``run`` calls.
    """

    def __init__(self, path: Path, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types
            raise ModelError(f"onnxruntime cannot load {path.name}: {err}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, 1, S, S)`` logits, computed by onnxruntime."""
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        (out,) = self.session.run([self.output_name], {self.input_name: array})
        return torch.from_numpy(out)


def read_export_meta(folder: Path) -> dict[str, Any]:
    """The validated ``export.json`` of an export folder."""
    path = folder / EXPORT_META
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunError(f"unreadable export metadata {path}: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise RunError(f"not a polypseg export (format {EXPORT_FORMAT!r} expected): {path}")
    if meta.get("export_format") not in ARTIFACTS:
        raise RunError(f"{path}: unknown export_format {meta.get('export_format')!r}")
    InputSpec.from_meta(meta, str(path))  # RunError when it lacks one
    return meta


def open_export(folder: Path, threads: int | None = None) -> OpenedModel:
    """Open export folder ``folder`` (``export.json`` and its artifact) on CPU.

    ``threads`` sets onnxruntime's intra-op threads. The TorchScript and ONNX artifacts are
    checked against the SHA-256 in ``export.json`` first (a :class:`ModelError` when they
    differ); a float export of a tested run keeps that run's ``test_metrics``.
    """
    from polypseg.hashing import file_sha256

    meta = read_export_meta(folder)
    kind = meta["export_format"]
    artifact = folder / ARTIFACTS[kind]
    if not artifact.is_file():
        raise RunError(f"export folder {folder} lacks {artifact.name}")
    expected = meta.get("sha256")
    if expected and file_sha256(artifact) != expected:
        raise ModelError(f"{artifact} does not match the SHA-256 in {EXPORT_META} (modified?)")
    tested = (meta.get("source") or {}).get("test_metrics")
    common = {"meta": meta, "input": InputSpec.from_meta(meta, str(folder / EXPORT_META)),
              "kind": kind, "model_id": model_id_of(meta), "params": meta.get("parameters"),
              "test_metrics": tested if isinstance(tested, dict) and tested else None}
    if kind == "onnx":
        return OpenedModel(model=OnnxModule(artifact, threads), thread_safe=True, **common)
    if kind == "torchscript":
        try:
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; it still works
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(artifact), map_location="cpu")
        except (RuntimeError, ValueError) as err:
            raise ModelError(f"cannot load TorchScript {artifact}: {err}") from None
        return OpenedModel(model=module.eval(), **common)
    spec = ModelSpec.from_meta(meta, str(folder / EXPORT_META))
    return OpenedModel(model=load_state_export(folder, spec), **common)


def load_state_export(folder: Path, spec: ModelSpec) -> nn.Module:
    """Rebuild the plain module of a "state" export (``zoo.create(...).export()``) and load it."""
    from polypseg.checkpoint import load_into, load_weights

    plain = frozen(spec.build(str(folder)))
    load_into(plain, load_weights(folder / "model"), source=f"export {folder}")
    return plain.eval()


def is_export_folder(path: str | Path) -> bool:
    """Whether ``path`` is an export folder (holds ``export.json``)."""
    return (Path(path) / EXPORT_META).is_file()


def open_model(path: str | Path, threads: int | None = None) -> OpenedModel:
    """Open a run folder, checkpoint stem or export folder for inference (on CPU).

    A run folder's or checkpoint's zoo model is frozen into plain convolutions
    (:func:`~polypseg.opened.open_run` with ``plain=True``); a run folder's test evaluation
    becomes the model's ``test_metrics``. ``threads`` sets onnxruntime's intra-op threads
    (torch's are set process-wide by the caller with ``torch.set_num_threads``). Errors name
    the path and what was expected; a file or folder this user may not read is a
    :class:`RunError` too, never a traceback.
    """
    try:
        return _open(Path(path), threads)
    except PermissionError as err:
        where = err.filename or path
        raise RunError(
            f"cannot read the model at {where}: permission denied for uid {os.getuid()} "
            "(its folders need mode a+rx and its files a+r, e.g. exported under umask 022)"
        ) from None


def _open(path: Path, threads: int | None) -> OpenedModel:
    artifact_names = (EXPORT_META, *ARTIFACTS.values())
    if path.is_file() and path.name in artifact_names and is_export_folder(path.parent):
        path = path.parent
    if path.is_dir() and is_export_folder(path):
        return open_export(path, threads)
    if not path.exists() and not path.with_suffix(".json").exists():
        raise RunError(f"no such model: {path} (a run folder, checkpoint or export folder)")
    opened = open_run(path, plain=True)
    opened.test_metrics = (tested_metrics(path) if path.is_dir() else None) or None
    return opened


def tested_metrics(run_dir: Path) -> dict[str, Any] | None:
    """The means of a run folder's test evaluation (``RUN/eval/test.json``, written by
    ``polypseg evaluate`` and by ``polypseg bench bundle``): every metric at the test masks'
    own size, the field's suite included, with the number of images; ``None`` when absent or
    unreadable (it only describes the model)."""
    try:
        doc = json.loads((run_dir / "eval" / "test.json").read_text(encoding="utf-8"))
        summary = doc["summary"]
        means = {k: v.get("mean") for k, v in summary.items() if isinstance(v, dict)}
        return {"n_images": int(doc["n_images"]), "size": doc.get("metric_size", "input"),
                **{k: float(v) for k, v in means.items() if isinstance(v, (int, float))}}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
