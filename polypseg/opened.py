"""A model opened for inference, whatever it was opened from: :class:`OpenedModel`.

Two openers return it:

* :func:`open_run` (here) opens a run folder or a checkpoint stem: the zoo model rebuilt from
  its safetensors (:func:`polypseg.checkpoint.load_checkpoint`), as evaluation, sweeps,
  inspection, reports and export use it, or frozen into plain convolutions (``plain=True``:
  ``model.export()``) as predict and serve run it;
* :func:`polypseg.deploy.bundle.open_export` opens an export folder (TorchScript, ONNX, or a
  "state" safetensors module), and :func:`polypseg.deploy.bundle.open_model` takes either.

Either way :attr:`OpenedModel.model` maps ``(B, 3, S, S)`` normalised ``float32`` to
``(B, 1, S, S)`` logits in eval mode, and :attr:`OpenedModel.input` says how to feed it and cut
its output (:class:`~polypseg.checkpoint.InputSpec`: ``S`` is its ``size``).

Importing this module loads neither torch nor zoo, and opening a run never imports
:mod:`polypseg.training` (the training loop): a served export needs neither zoo nor e2cnn.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polypseg.checkpoint import CheckpointMeta, InputSpec, model_config_of

if TYPE_CHECKING:
    from torch import nn

#: :attr:`OpenedModel.kind` of a model rebuilt from a checkpoint (an export's is its format).
CHECKPOINT_KIND = "checkpoint"


@dataclass
class OpenedModel:
    """A model ready for inference and what is needed to feed it and describe it.

    ``kind`` is ``"checkpoint"`` (a run folder or checkpoint stem: ``stem`` and ``checkpoint``
    are set) or the export's format (``"torchscript"``, ``"onnx"``, ``"state"``).
    """

    #: ``(B, 3, S, S)`` normalised float32 -> ``(B, 1, S, S)`` logits; eval mode.
    model: nn.Module
    #: How to feed the model and cut its output (from ``meta``).
    input: InputSpec
    #: The checkpoint's or the export's metadata (the JSON object).
    meta: dict[str, Any]
    #: ``"checkpoint"``, ``"torchscript"``, ``"onnx"`` or ``"state"``.
    kind: str
    #: Stable identifier (:func:`model_id_of`).
    model_id: str
    #: The checkpoint stem (``RUN/checkpoints/best``); ``None`` for an export.
    stem: Path | None = None
    #: The run folder holding the checkpoint; ``None`` for a bare checkpoint or an export.
    run_dir: Path | None = None
    #: The checkpoint's metadata as its typed record; ``None`` for an export.
    checkpoint: CheckpointMeta | None = None
    #: Parameters of the trained (unexpanded) model, when known.
    params: int | None = None
    #: Whether concurrent ``model`` calls are safe without a lock (onnxruntime: yes).
    thread_safe: bool = False
    #: Means of the run's test evaluation (``RUN/eval/test.json``), when the opener found one.
    test_metrics: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        """The run folder's name, else the checkpoint stem's, else the variant."""
        if self.run_dir is not None:
            return self.run_dir.name
        return self.stem.name if self.stem is not None else self.variant

    @property
    def variant(self) -> str:
        """The zoo variant name."""
        return str(self.meta.get("variant"))

    @property
    def size(self) -> int:
        """Side of the square input the model was trained at."""
        return self.input.size

    @property
    def depth(self) -> int | None:
        """U-Net depth (inputs divisible by ``2**depth``), when the variant has one."""
        return self.input.depth

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

    @property
    def split_sha256(self) -> str | None:
        """Hash of the split the model was trained on, if recorded."""
        return self.checkpoint.split_sha256 if self.checkpoint is not None else None

    @property
    def split_file(self) -> Path | None:
        """The run folder's copy of its split, if there is one."""
        if self.run_dir is not None and (self.run_dir / "split.json").is_file():
            return self.run_dir / "split.json"
        return None

    def info(self) -> dict[str, Any]:
        """Public description (``GET /v1/model``): no file names or paths. (``model`` holds the
        recorded model config, under the key this answer has always used.)"""
        meta = self.meta
        return {
            "model_id": self.model_id,
            "variant": meta.get("variant"),
            "format": self.kind,
            "parameters": self.params,
            "model": model_config_of(meta),
            "input": {"size": self.size, "mean": self.mean, "std": self.std, "pad": self.pad},
            "threshold": self.threshold,
            "metrics": meta.get("metrics") or {},
            **({"test_metrics": self.test_metrics} if self.test_metrics else {}),
            "source_sha256": source_sha256(meta),
        }


def source_sha256(meta: dict[str, Any]) -> str | None:
    """SHA-256 of the trained weights a model comes from (checkpoint or export metadata)."""
    source = meta.get("source")
    if isinstance(source, dict) and source.get("sha256"):
        return str(source["sha256"])
    return meta.get("weights_sha256")


def model_id_of(meta: dict[str, Any]) -> str:
    """The id an export records (:func:`polypseg.deploy.card.identity`), else variant and the
    first 12 hex digits of the source weights' SHA-256 (``-int8`` added for a quantised export
    written before ids were recorded)."""
    if isinstance(meta.get("model_id"), str) and meta["model_id"]:
        return meta["model_id"]
    sha = source_sha256(meta) or "unknown"
    scheme = (meta.get("quantization") or {}).get("scheme")
    return f"{meta.get('variant', 'model')}-{sha[:12]}" + (f"-{scheme}" if scheme else "")


def frozen(model: nn.Module) -> nn.Module:
    """``model.export()`` (expanded filters in plain convs) in eval mode, or for a model without
    ``export`` an eval-mode copy of it; ``model`` itself is left in the mode it was in."""
    exporter = getattr(model, "export", None)
    plain = exporter() if callable(exporter) else copy.deepcopy(model)
    return plain.eval()


def open_run(
    path: str | Path, which: str = "best", device: str = "cpu", plain: bool = False
) -> OpenedModel:
    """Open run folder (its ``checkpoints/WHICH``) or checkpoint stem ``path`` on ``device``.

    Args:
        path: a run folder, a checkpoint stem, or either file of a checkpoint.
        which: the run folder's checkpoint, ``"best"`` or ``"last"``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:K`` (:mod:`polypseg.devices`).
        plain: freeze the zoo model into plain convolutions (``model.export()``), as predict
            and serve run it; otherwise the zoo model itself (its learned parameters, its
            size check), as evaluation and inspection use it.

    :class:`~polypseg.errors.RunError` when the run or checkpoint is missing or its metadata
    lacks the input; :class:`~polypseg.errors.ModelError` when the weights do not fit the model.
    """
    import zoo
    from polypseg.checkpoint import load_checkpoint, resolve_checkpoint
    from polypseg.devices import resolve_device

    stem = resolve_checkpoint(path, which)
    model, checkpoint = load_checkpoint(stem)
    spec = checkpoint.require_input(str(stem))
    params = zoo.count_parameters(model)
    if plain:
        model = frozen(model)
    model.to(resolve_device(device))
    model.eval()
    meta = checkpoint.to_json()
    return OpenedModel(
        model=model,
        input=spec,
        meta=meta,
        kind=CHECKPOINT_KIND,
        model_id=model_id_of(meta),
        stem=stem,
        run_dir=stem.parent.parent if stem.parent.name == "checkpoints" else None,
        checkpoint=checkpoint,
        params=params,
    )
