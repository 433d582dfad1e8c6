"""Model checkpoints: safetensors weights + a JSON metadata file, never a pickle.

A checkpoint is a pair of files with one stem: ``STEM.safetensors`` (the model's state_dict,
saved in train mode so that e2cnn's eval-mode ``filter`` buffers never enter it) and
``STEM.json`` (metadata). The metadata names the variant and the constructor arguments, so a
checkpoint rebuilds its own model through ``zoo.create``; loading checks that every tensor
matches by name and shape, so a checkpoint of another variant or width is a clear
:class:`~polypseg.errors.ModelError`, not a crash.

The metadata is one typed record, :class:`CheckpointMeta` (a :class:`ModelSpec` and an
:class:`InputSpec` plus the run's facts), written by :meth:`CheckpointMeta.to_json` and read by
:meth:`CheckpointMeta.from_json` only. Its JSON keys: ``format``
(``"polypseg-checkpoint/1"``), ``variant``, ``model_config`` (the model's own ``config``
without the variant, i.e. the other arguments of ``zoo.create``: ``in_channels``,
``out_channels``, ``width``, ``depth`` and any variant options; written as ``model`` before, a
key every reader still accepts), ``input`` (``size``, ``mean``, ``std``, and ``pad`` when set:
the input the model was trained on), ``threshold``, ``epoch``, ``step``, ``metrics``,
``split_sha256``, ``split``, ``params``, ``args``, ``versions``, ``created``,
``weights_sha256``, ``decision`` (the frame-level "polyp present" thresholds chosen on
validation: :mod:`polypseg.decision`). Only ``format``, ``variant`` and ``model_config`` (or
``model``) are required; keys this version does not know are kept on a rewrite.
``export.json`` (:mod:`polypseg.deploy.export`) shares the ``variant``/``model_config``/
``input``/``threshold`` keys, read by the same :meth:`ModelSpec.from_meta` and
:meth:`InputSpec.from_meta`.
"""

from __future__ import annotations

import contextlib
import json
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polypseg.atomic import atomic_write_json, atomic_write_with
from polypseg.errors import ModelError, RunError
from polypseg.hashing import file_sha256
from polypseg.modes import train_mode

if TYPE_CHECKING:  # the metadata is read without loading torch (reports, bench tables)
    import torch
    from torch import nn

FORMAT = "polypseg-checkpoint/1"
WEIGHTS_SUFFIX = ".safetensors"
META_SUFFIX = ".json"
#: Probability threshold of a model whose metadata records none.
DEFAULT_THRESHOLD = 0.5
#: Key of the model's config (without the variant) in checkpoint and export metadata, and the
#: key earlier versions wrote it under (read, never written).
MODEL_CONFIG_KEY, LEGACY_MODEL_CONFIG_KEY = "model_config", "model"


def model_config_of(meta: Mapping[str, Any]) -> Any:
    """The model config recorded in checkpoint or export metadata: ``model_config``, or
    ``model`` in metadata written before it had that name; ``None`` when neither is there."""
    if MODEL_CONFIG_KEY in meta:
        return meta[MODEL_CONFIG_KEY]
    return meta.get(LEGACY_MODEL_CONFIG_KEY)


@dataclass(frozen=True)
class ModelSpec:
    """What rebuilds a model: ``zoo.create(variant, **config)``.

    ``config`` is the model's own ``config`` (``zoo.create`` sets it) without the variant name:
    ``in_channels``, ``out_channels``, ``width``, ``depth`` and any variant options (JSON
    values); ``zoo.from_config({"variant": variant, **config})`` rebuilds the model.
    """

    variant: str
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def depth(self) -> int | None:
        """Poolings of the U-Net (inputs must be divisible by ``2**depth``); ``None`` if unset."""
        depth = self.config.get("depth")
        return int(depth) if depth is not None else None

    @classmethod
    def of(cls, model: nn.Module) -> ModelSpec:
        """The spec of a model built by ``zoo.create`` (its ``config``); ``ValueError`` for a
        model that has none."""
        config = dict(getattr(model, "config", None) or {})
        variant = config.pop("variant", None)
        config.pop("name", None)
        if not isinstance(variant, str):
            raise ValueError("not a zoo model: its .config does not name the variant")
        return cls(variant, config)

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], where: str) -> ModelSpec:
        """The ``variant`` and ``model_config`` keys of checkpoint or export metadata (``model``
        in metadata written before); :class:`RunError` naming ``where`` when one is missing."""
        if "variant" not in meta:
            raise RunError(f"checkpoint metadata lacks 'variant': {where}")
        config = model_config_of(meta)
        if config is None:
            raise RunError(f"checkpoint metadata lacks {MODEL_CONFIG_KEY!r}: {where}")
        if not isinstance(meta["variant"], str) or not isinstance(config, dict):
            raise RunError(f"checkpoint metadata: 'variant' must be a name and "
                           f"{MODEL_CONFIG_KEY!r} an object: {where}")
        return cls(meta["variant"], dict(config))

    def to_meta(self) -> dict[str, Any]:
        """The ``variant`` and ``model_config`` keys of the metadata."""
        return {"variant": self.variant, MODEL_CONFIG_KEY: dict(self.config)}

    def build(self, where: str = "checkpoint") -> nn.Module:
        """``zoo.create(variant, **config)``; :class:`ModelError` naming ``where`` if it fails.

        Options the config predates take the value the model was built with then
        (``zoo.recorded_options``: a spec without ``head_norm`` was built without one), so a
        checkpoint or export of any version rebuilds its own model."""
        import zoo

        try:
            return zoo.create(self.variant, **zoo.recorded_options(self.config))
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"{where}: cannot build {self.variant!r}: {err}") from None


@dataclass(frozen=True)
class InputSpec:
    """How to feed a model and read its output.

    Inputs are ``(B, 3, size, size)`` RGB scaled to [0, 1] then normalised ``(x - mean) / std``
    (images stretched to the square, or letterboxed with zeros when ``pad``); ``size`` is
    divisible by ``2**depth``. Foreground is ``sigmoid(logits) >= threshold``. On disk: the
    ``input`` object (``size``, ``mean``, ``std``, ``pad`` when set), the top-level
    ``threshold`` and ``model_config.depth``.
    """

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: bool = False
    threshold: float = DEFAULT_THRESHOLD
    depth: int | None = None

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], where: str) -> InputSpec:
        """The input spec of checkpoint or export metadata; :class:`RunError` naming ``where``
        when ``input`` lacks ``size``, ``mean`` or ``std``."""
        spec = meta.get("input")
        config = model_config_of(meta)
        try:
            if not isinstance(spec, dict):
                raise TypeError
            threshold = meta.get("threshold")
            depth = config.get("depth") if isinstance(config, dict) else None
            return cls(
                size=int(spec["size"]),
                mean=tuple(float(v) for v in spec["mean"]),
                std=tuple(float(v) for v in spec["std"]),
                pad=bool(spec.get("pad", False)),
                threshold=DEFAULT_THRESHOLD if threshold is None else float(threshold),
                depth=None if depth is None else int(depth),
            )
        except (KeyError, TypeError, ValueError):
            raise RunError(f"{where}: metadata lacks input size/mean/std") from None

    def to_meta(self) -> dict[str, Any]:
        """The ``input`` object of the metadata (``depth`` and ``threshold`` live elsewhere)."""
        spec: dict[str, Any] = {"size": self.size, "mean": list(self.mean), "std": list(self.std)}
        if self.pad:
            spec["pad"] = True
        return spec


#: Optional keys of the metadata, in the order they are written.
_FACTS = ("epoch", "step", "metrics", "split_sha256", "split", "params", "args", "versions",
          "decision")


@dataclass(frozen=True)
class CheckpointMeta:
    """The metadata of a checkpoint (``STEM.json``), the one owner of its format.

    ``input`` is ``None`` for a checkpoint saved without one (only hand-made ones):
    :meth:`require_input` is the error readers that need it raise. ``extra`` keeps keys this
    version does not know, so reading then writing loses nothing.
    """

    model: ModelSpec
    input: InputSpec | None = None
    epoch: int | None = None  # epochs trained (1-based; 0 for a model saved untrained)
    step: int | None = None  # optimiser steps trained
    metrics: dict[str, float] | None = None  # train_loss, val_loss, val_dice of that epoch
    split_sha256: str | None = None  # hash of the split trained on (Split.sha256)
    split: dict[str, Any] | None = None  # its dataset, rule and seed
    params: int | None = None  # parameters of the model
    args: dict[str, Any] | None = None  # the TrainConfig, as a dict
    versions: dict[str, str] | None = None  # library_versions() when written
    created: str | None = None  # when written (ISO 8601)
    weights_sha256: str | None = None  # SHA-256 of STEM.safetensors
    decision: dict[str, Any] | None = None  # frame-level thresholds (polypseg.decision)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.input is not None and self.input.depth != self.model.depth:
            raise ValueError(
                f"input depth {self.input.depth} != model depth {self.model.depth}"
            )

    @property
    def variant(self) -> str:
        """The zoo variant name."""
        return self.model.variant

    def require_input(self, where: str) -> InputSpec:
        """:attr:`input`, or a :class:`RunError` naming ``where`` when the metadata has none."""
        if self.input is None:
            raise RunError(f"{where}: checkpoint metadata lacks input size/mean/std")
        return self.input

    @classmethod
    def from_json(cls, raw: Any, where: str) -> CheckpointMeta:
        """The record of a ``STEM.json`` object, of any version; :class:`RunError` naming
        ``where`` when it is not checkpoint metadata or lacks ``variant`` / ``model_config``
        (``model`` before it had that name; rewritten as ``model_config``)."""
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise RunError(f"not a polypseg checkpoint (format {FORMAT!r} expected): {where}")
        model = ModelSpec.from_meta(raw, where)
        known = {"format", "variant", MODEL_CONFIG_KEY, LEGACY_MODEL_CONFIG_KEY, "created",
                 "weights_sha256", *_FACTS}
        try:
            spec: InputSpec | None = InputSpec.from_meta(raw, where)
            known |= {"input", "threshold"}
        except RunError:  # kept as it is in ``extra``; require_input() says what is missing
            spec = None
        return cls(
            model=model,
            input=spec,
            created=raw.get("created"),
            weights_sha256=raw.get("weights_sha256"),
            extra={k: v for k, v in raw.items() if k not in known},
            **{k: raw.get(k) for k in _FACTS},
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``STEM.json`` (keys whose value is ``None`` are left out)."""
        out: dict[str, Any] = {"format": FORMAT}
        if self.created is not None:
            out["created"] = self.created
        out.update(self.model.to_meta())
        if self.input is not None:
            out["input"] = self.input.to_meta()
            out["threshold"] = self.input.threshold
        for key in _FACTS:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.weights_sha256 is not None:
            out["weights_sha256"] = self.weights_sha256
        out.update(self.extra)
        return out


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a model's numbers, for the metadata."""
    import importlib.metadata as md

    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("polypseg", "monai", "e2cnn", "numpy", "albumentations"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[name] = md.version(name)
    return versions


def _stem(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix in (WEIGHTS_SUFFIX, META_SUFFIX):
        return path.with_suffix("")
    return path


def save_checkpoint(stem: str | Path, model: nn.Module, meta: CheckpointMeta) -> Path:
    """Write ``STEM.safetensors`` then ``STEM.json``, each atomically; return the weights path.

    ``meta`` gets the weights' SHA-256, and when it has none the time and the library
    versions. The state_dict is taken in train mode (the mode is restored afterwards).
    """
    from safetensors.torch import save_file

    stem = _stem(stem)
    with train_mode(model):
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    weights = stem.with_suffix(WEIGHTS_SUFFIX)
    atomic_write_with(weights, lambda tmp: save_file(state, str(tmp)))
    written = replace(
        meta,
        created=meta.created or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        versions=meta.versions or library_versions(),
        weights_sha256=file_sha256(weights),
    )
    atomic_write_json(stem.with_suffix(META_SUFFIX), written.to_json())
    return weights


def read_meta(stem: str | Path) -> CheckpointMeta:
    """The metadata of a checkpoint; :class:`RunError` when it is missing or not checkpoint
    metadata naming a variant and its constructor kwargs."""
    meta_path = _stem(stem).with_suffix(META_SUFFIX)
    if not meta_path.is_file():
        raise RunError(f"checkpoint metadata not found: {meta_path}")
    try:
        raw = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunError(f"checkpoint metadata is not valid JSON: {meta_path} ({err})") from None
    return CheckpointMeta.from_json(raw, str(meta_path))


def write_meta(stem: str | Path, meta: CheckpointMeta) -> Path:
    """Rewrite ``STEM.json`` (atomically) with ``meta``, the weights untouched: for facts
    added after training, such as the ``decision`` thresholds. Return the metadata path."""
    path = _stem(stem).with_suffix(META_SUFFIX)
    atomic_write_json(path, meta.to_json())
    return path


def load_weights(stem: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of ``STEM.safetensors`` (no pickle is ever read)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = _stem(stem).with_suffix(WEIGHTS_SUFFIX)
    if not weights.is_file():
        raise RunError(f"checkpoint weights not found: {weights}")
    try:
        return load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelError(f"unreadable checkpoint weights {weights}: {err}") from None


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load ``state`` into ``model`` (in train mode), with a clear error on any mismatch; the
    model keeps its mode, also when it raises."""
    with train_mode(model):
        expected = model.state_dict()
        _check_fits(expected, state, source)
        model.load_state_dict(state, strict=True)


def _check_fits(
    expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], source: str
) -> None:
    """:class:`ModelError` naming the missing, unexpected and reshaped tensors, if any."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            parts.append(f"{len(wrong)} with another shape (e.g. {wrong[0]})")
        raise ModelError(
            f"{source} does not fit this model: " + "; ".join(parts)
            + ". Was it saved from another variant, width or depth?"
        )


def load_checkpoint(
    stem: str | Path,
    expected_variant: str | None = None,
) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild the model named by a checkpoint's metadata and load its weights (on CPU).

    Returns ``(model, meta)`` with the model in eval mode. ``expected_variant``, when given,
    must equal the checkpoint's variant (a :class:`ModelError` otherwise).
    """
    meta = read_meta(stem)
    if expected_variant is not None and meta.variant != expected_variant:
        raise ModelError(
            f"checkpoint {_stem(stem)} holds variant {meta.variant!r}, not {expected_variant!r}"
        )
    model = meta.model.build(f"checkpoint {_stem(stem)}")
    load_into(model, load_weights(stem), source=f"checkpoint {_stem(stem)}")
    model.eval()
    return model, meta


def resolve_checkpoint(path: str | Path, which: str = "best") -> Path:
    """The checkpoint stem that ``path`` names.

    ``path`` may be a run folder (its ``checkpoints/WHICH``), a checkpoint stem, or either file
    of the pair. A missing run folder or checkpoint is a :class:`RunError` naming the path.
    """
    path = Path(path)
    if path.is_dir():
        stem = path / "checkpoints" / which
        if not stem.with_suffix(META_SUFFIX).is_file():
            raise RunError(f"no {which!r} checkpoint in run folder {path} (looked for {stem}.json)")
        return stem
    stem = _stem(path)
    if stem.with_suffix(META_SUFFIX).is_file():
        return stem
    if not path.exists():
        raise RunError(f"no such run folder or checkpoint: {path}")
    raise RunError(f"not a run folder or checkpoint: {path}")
