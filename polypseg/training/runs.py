"""Opening a trained run for prediction: its checkpoint, model, input spec and split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from polypseg.checkpoint import CheckpointMeta, InputSpec


@dataclass
class LoadedRun:
    """A run's model (eval mode, on its device) and what is needed to feed it."""

    name: str
    run_dir: Path | None  # None when a bare checkpoint was given
    stem: Path
    model: nn.Module
    meta: CheckpointMeta
    input: InputSpec

    @property
    def variant(self) -> str:
        """The zoo variant name."""
        return self.meta.variant

    @property
    def size(self) -> int:
        """Side of the square input the model was trained at."""
        return self.input.side

    @property
    def depth(self) -> int | None:
        """U-Net depth (inputs divisible by ``2**depth``), when the variant has one."""
        return self.input.depth

    @property
    def threshold(self) -> float:
        """Probability threshold recorded at training time (0.5 by default)."""
        return self.input.threshold

    @property
    def split_sha256(self) -> str | None:
        """Hash of the split the model was trained on, if recorded."""
        return self.meta.split_sha256

    @property
    def split_file(self) -> Path | None:
        """The run folder's copy of its split, if there is one."""
        if self.run_dir is not None and (self.run_dir / "split.json").is_file():
            return self.run_dir / "split.json"
        return None


def load_run(path: str | Path, which: str = "best", device: str = "cpu") -> LoadedRun:
    """Open run folder (or checkpoint) ``path``: :class:`~polypseg.errors.RunError` when it is
    missing, :class:`~polypseg.errors.ModelError` when the checkpoint does not fit its model."""
    from polypseg.checkpoint import load_checkpoint, resolve_checkpoint
    from polypseg.training.distributed import resolve_device

    stem = resolve_checkpoint(path, which)
    model, meta = load_checkpoint(stem)
    model.to(resolve_device(device))
    model.eval()
    spec = meta.require_input(str(stem))
    run_dir = stem.parent.parent if stem.parent.name == "checkpoints" else None
    name = run_dir.name if run_dir is not None else stem.name
    return LoadedRun(name, run_dir, stem, model, meta, spec)


def create_run(
    run_dir: str | Path,
    model: nn.Module,
    size: int,
    split: Any,
    threshold: float = 0.5,
    extra_meta: dict[str, Any] | None = None,
) -> Path:
    """A run folder (``split.json`` + ``checkpoints/{best,last}``) holding ``model`` as it is.

    For models that were not trained by :func:`polypseg.training.train` (an untrained
    baseline, imported weights) so that evaluate / sweep / plot treat them like any run.
    ``model.config`` (set by ``zoo.create``) names the variant and its kwargs; ``split`` is a
    :class:`polypseg.data.Split`; ``extra_meta``: more keys of the checkpoint metadata.
    """
    from polypseg.checkpoint import ModelSpec, save_checkpoint
    from polypseg.training.models import count_parameters, input_spec

    run_dir = Path(run_dir)
    try:
        spec = ModelSpec.of(model)
    except ValueError:
        raise ValueError("create_run needs a zoo model (its .config names the variant)") from None
    split.save(run_dir / "split.json")
    meta = CheckpointMeta(
        model=spec,
        input=input_spec(size, spec, threshold),
        epoch=0,
        metrics={},
        split_sha256=split.sha256(),
        params=count_parameters(model),
        extra=dict(extra_meta or {}),
    )
    for which in ("best", "last"):
        save_checkpoint(run_dir / "checkpoints" / which, model, meta)
    return run_dir
