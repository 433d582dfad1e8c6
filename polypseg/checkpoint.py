"""Model checkpoints: safetensors weights + a JSON metadata file, never a pickle.

A checkpoint is a pair of files with one stem: ``STEM.safetensors`` (the model's state_dict,
saved in train mode so that e2cnn's eval-mode ``filter`` buffers never enter it) and
``STEM.json`` (metadata). The metadata names the variant and the constructor arguments, so a
checkpoint rebuilds its own model through ``zoo.create``; loading checks that every tensor
matches by name and shape, so a checkpoint of another variant or width is a clear
:class:`~polypseg.errors.ModelError`, not a crash.

Metadata keys (all JSON):
``format`` (``"polypseg-checkpoint/1"``), ``variant``, ``model`` (kwargs of ``zoo.create``:
``in_channels``, ``out_channels``, ``width``, ``depth`` and any variant options), ``input``
(``size``, ``mean``, ``std``: the normalisation the model was trained with), ``threshold``,
``epoch``, ``metrics``, ``split_sha256``, ``args``, ``versions``, ``created``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polypseg.atomic import atomic_write_json, atomic_write_with
from polypseg.errors import ModelError, RunError

FORMAT = "polypseg-checkpoint/1"
WEIGHTS_SUFFIX = ".safetensors"
META_SUFFIX = ".json"


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a model's numbers, for the metadata."""
    import importlib.metadata as md

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("polypseg", "monai", "e2cnn", "numpy", "albumentations"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[name] = md.version(name)
    return versions


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stem(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix in (WEIGHTS_SUFFIX, META_SUFFIX):
        return path.with_suffix("")
    return path


def save_checkpoint(stem: str | Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``STEM.safetensors`` then ``STEM.json``, each atomically; return the weights path.

    ``meta`` must hold at least ``variant`` and ``model`` (the ``zoo.create`` kwargs). The
    state_dict is taken in train mode (the mode is restored afterwards).
    """
    from safetensors.torch import save_file

    if "variant" not in meta or "model" not in meta:
        raise ValueError("checkpoint metadata needs 'variant' and 'model' (zoo.create kwargs)")
    stem = _stem(stem)
    was_training = model.training
    model.train()
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    finally:
        model.train(was_training)
    weights = stem.with_suffix(WEIGHTS_SUFFIX)
    atomic_write_with(weights, lambda tmp: save_file(state, str(tmp)))
    full_meta = {"format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **meta}
    full_meta.setdefault("versions", library_versions())
    full_meta["weights_sha256"] = file_sha256(weights)
    atomic_write_json(stem.with_suffix(META_SUFFIX), full_meta)
    return weights


def read_meta(stem: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint, validated to name a variant and its constructor kwargs."""
    meta_path = _stem(stem).with_suffix(META_SUFFIX)
    if not meta_path.is_file():
        raise RunError(f"checkpoint metadata not found: {meta_path}")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunError(f"checkpoint metadata is not valid JSON: {meta_path} ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RunError(f"not a polypseg checkpoint (format {FORMAT!r} expected): {meta_path}")
    for key in ("variant", "model"):
        if key not in meta:
            raise RunError(f"checkpoint metadata lacks {key!r}: {meta_path}")
    return meta


def load_state(stem: str | Path) -> dict[str, torch.Tensor]:
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
    """Load ``state`` into ``model`` (in train mode), with a clear error on any mismatch."""
    was_training = model.training
    model.train()
    expected = model.state_dict()
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
    model.load_state_dict(state, strict=True)
    model.train(was_training)


def load_checkpoint(
    stem: str | Path,
    expected_variant: str | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model named by a checkpoint's metadata and load its weights (on CPU).

    Returns ``(model, meta)`` with the model in eval mode. ``expected_variant``, when given,
    must equal the checkpoint's variant (a :class:`ModelError` otherwise).
    """
    import zoo

    meta = read_meta(stem)
    variant = meta["variant"]
    if expected_variant is not None and variant != expected_variant:
        raise ModelError(
            f"checkpoint {_stem(stem)} holds variant {variant!r}, not {expected_variant!r}"
        )
    try:
        model = zoo.create(variant, **meta["model"])
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"checkpoint {_stem(stem)}: cannot build {variant!r}: {err}") from None
    load_into(model, load_state(stem), source=f"checkpoint {_stem(stem)}")
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
