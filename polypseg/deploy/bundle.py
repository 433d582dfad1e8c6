"""A model ready for inference: a run folder or an export folder loaded into a :class:`ModelBundle`.

A bundle pairs a callable torch module, ``(B, 3, S, S)`` normalised ``float32`` to
``(B, 1, S, S)`` logits, with the metadata that says how to feed it (side ``S``, mean/std,
threshold). Sources:

* a run folder or checkpoint stem (:func:`~polypseg.checkpoint.resolve_checkpoint`): the zoo
  model is rebuilt from safetensors and frozen with ``model.export()`` (needs ``zoo``);
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polypseg.checkpoint import InputSpec, ModelSpec
from polypseg.errors import ModelError, RunError

#: ``export.json``'s format tag.
EXPORT_FORMAT = "polypseg-export/1"
#: Name of the metadata file of an export folder.
EXPORT_META = "export.json"
#: Artifact file name per export format.
ARTIFACTS: dict[str, str] = {
    "torchscript": "model.pt",
    "onnx": "model.onnx",
    "state": "model.safetensors",
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


@dataclass
class ModelBundle:
    """A loaded model and what is needed to feed it and describe it."""

    #: ``(B, 3, S, S)`` normalised float32 -> ``(B, 1, S, S)`` logits; eval mode.
    module: nn.Module
    #: The checkpoint's or the export's metadata (the JSON object).
    meta: dict[str, Any]
    #: How to feed the module and cut its output (from ``meta``).
    input: InputSpec
    #: ``"checkpoint"``, ``"torchscript"``, ``"onnx"`` or ``"state"``.
    kind: str
    #: Stable identifier: variant and the first 12 hex digits of the source weights' SHA-256.
    model_id: str
    #: Whether concurrent ``module`` calls are safe without a lock (onnxruntime: yes).
    thread_safe: bool = False
    #: Parameters of the trained (unexpanded) model, when known.
    params: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def side(self) -> int:
        """Square input side the model was trained at."""
        return self.input.side

    @property
    def mean(self) -> tuple[float, ...]:
        """RGB mean on the 0-1 scale."""
        return self.input.mean

    @property
    def std(self) -> tuple[float, ...]:
        """RGB standard deviation on the 0-1 scale."""
        return self.input.std

    @property
    def pad(self) -> bool:
        """Whether training letterboxed (kept the aspect ratio and padded) instead of stretching."""
        return self.input.pad

    @property
    def threshold(self) -> float:
        """Probability threshold chosen at training (0.5 when none was recorded)."""
        return self.input.threshold

    def info(self) -> dict[str, Any]:
        """Public description (``GET /v1/model``): no file names or paths."""
        meta = self.meta
        return {
            "model_id": self.model_id,
            "variant": meta.get("variant"),
            "format": self.kind,
            "parameters": self.params,
            "model": meta.get("model"),
            "input": {"size": self.side, "mean": self.mean, "std": self.std, "pad": self.pad},
            "threshold": self.threshold,
            "metrics": meta.get("metrics") or {},
            **({"test_metrics": self.extra["test_metrics"]} if "test_metrics" in self.extra
               else {}),
            "source_sha256": source_sha256(meta),
        }


def source_sha256(meta: dict[str, Any]) -> str | None:
    """SHA-256 of the trained weights a bundle comes from (checkpoint or export metadata)."""
    source = meta.get("source")
    if isinstance(source, dict) and source.get("sha256"):
        return str(source["sha256"])
    return meta.get("weights_sha256")


def frozen(model: nn.Module) -> nn.Module:
    """``model.export()`` (expanded filters in plain convs) in eval mode, or ``model`` itself."""
    exporter = getattr(model, "export", None)
    plain = exporter() if callable(exporter) else model
    return plain.eval()


def _model_id(meta: dict[str, Any]) -> str:
    """The id an export records (:func:`polypseg.deploy.card.identity`), else variant and
    source weights (``-int8`` added for a quantised export written before ids were recorded)."""
    if isinstance(meta.get("model_id"), str) and meta["model_id"]:
        return meta["model_id"]
    sha = source_sha256(meta) or "unknown"
    scheme = (meta.get("quantization") or {}).get("scheme")
    return f"{meta.get('variant', 'model')}-{sha[:12]}" + (f"-{scheme}" if scheme else "")


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


def _load_export(folder: Path, threads: int | None) -> ModelBundle:
    from polypseg.hashing import file_sha256

    meta = read_export_meta(folder)
    kind = meta["export_format"]
    artifact = folder / ARTIFACTS[kind]
    if not artifact.is_file():
        raise RunError(f"export folder {folder} lacks {artifact.name}")
    expected = meta.get("sha256")
    if expected and file_sha256(artifact) != expected:
        raise ModelError(f"{artifact} does not match the SHA-256 in {EXPORT_META} (modified?)")
    params = meta.get("parameters")
    common = {"meta": meta, "input": InputSpec.from_meta(meta, str(folder / EXPORT_META)),
              "kind": kind, "model_id": _model_id(meta), "params": params}
    if kind == "onnx":
        return ModelBundle(module=OnnxModule(artifact, threads), thread_safe=True, **common)
    if kind == "torchscript":
        try:
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; it still works
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(artifact), map_location="cpu")
        except (RuntimeError, ValueError) as err:
            raise ModelError(f"cannot load TorchScript {artifact}: {err}") from None
        return ModelBundle(module=module.eval(), **common)
    spec = ModelSpec.from_meta(meta, str(folder / EXPORT_META))
    return ModelBundle(module=load_state_export(folder, spec), **common)


def load_state_export(folder: Path, spec: ModelSpec) -> nn.Module:
    """Rebuild the plain module of a "state" export (``zoo.create(...).export()``) and load it."""
    from polypseg.checkpoint import load_into, load_weights

    plain = frozen(spec.build(str(folder)))
    load_into(plain, load_weights(folder / "model"), source=f"export {folder}")
    return plain.eval()


def _load_checkpoint(path: Path) -> ModelBundle:
    from polypseg.checkpoint import load_checkpoint, resolve_checkpoint
    from polypseg.training.models import count_parameters  # with zoo, never for exports

    stem = resolve_checkpoint(path)
    model, meta = load_checkpoint(stem)
    spec = meta.require_input(str(stem))
    raw = meta.to_json()
    return ModelBundle(
        module=frozen(model),
        meta=raw,
        input=spec,
        kind="checkpoint",
        model_id=_model_id(raw),
        params=count_parameters(model),
    )


def is_export_folder(path: str | Path) -> bool:
    """Whether ``path`` is an export folder (holds ``export.json``)."""
    return (Path(path) / EXPORT_META).is_file()


def load_bundle(path: str | Path, threads: int | None = None) -> ModelBundle:
    """Load a run folder, checkpoint stem or export folder for inference (on CPU).

    ``threads`` sets onnxruntime's intra-op threads (torch's are set process-wide by the
    caller with ``torch.set_num_threads``). Errors name the path and what was expected; a file
    or folder this user may not read is a :class:`RunError` too, never a traceback.
    """
    try:
        return _open_bundle(Path(path), threads)
    except PermissionError as err:
        where = err.filename or path
        raise RunError(
            f"cannot read the model at {where}: permission denied for uid {os.getuid()} "
            "(its folders need mode a+rx and its files a+r, e.g. exported under umask 022)"
        ) from None


def _open_bundle(path: Path, threads: int | None) -> ModelBundle:
    artifact_names = (EXPORT_META, *ARTIFACTS.values())
    if path.is_file() and path.name in artifact_names and is_export_folder(path.parent):
        path = path.parent
    if path.is_dir() and is_export_folder(path):
        bundle = _load_export(path, threads)
        tested = (bundle.meta.get("source") or {}).get("test_metrics")
        if isinstance(tested, dict) and tested:  # a float export of a tested run
            bundle.extra["test_metrics"] = tested
        return bundle
    if not path.exists() and not path.with_suffix(".json").exists():
        raise RunError(f"no such model: {path} (a run folder, checkpoint or export folder)")
    bundle = _load_checkpoint(path)
    tested = tested_metrics(path) if path.is_dir() else None
    if tested:
        bundle.extra["test_metrics"] = tested
    return bundle


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
