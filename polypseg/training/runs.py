"""A run folder for a model that was not trained here, laid out as training lays one out.

Opening a run (its checkpoint, model, input and split) is :func:`polypseg.opened.open_run`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from polypseg.checkpoint import CheckpointMeta


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

    Args:
        run_dir: the run folder to create.
        model: a zoo model (its ``config`` names the variant).
        size: the input side it is evaluated at.
        split: the :class:`polypseg.data.Split` it is evaluated on.
        threshold: the probability threshold recorded.
        extra_meta: more keys of the checkpoint metadata; ``None``: none.
    """
    from polypseg.checkpoint import ModelSpec, save_checkpoint
    from polypseg.training.models import input_spec
    from zoo import count_parameters

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
