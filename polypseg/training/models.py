"""Building a zoo model from a training configuration, with user-facing errors."""

from __future__ import annotations

from typing import Any

from torch import nn

from polypseg.checkpoint import InputSpec, ModelSpec
from polypseg.errors import ModelError


def available_models() -> list[str]:
    """The variant names ``zoo`` knows."""
    import zoo

    return list(zoo.available())


def build_model(
    name: str,
    width: int | None = None,
    depth: int | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[nn.Module, ModelSpec]:
    """``(model, spec)``: ``zoo.create(name, ...)`` and the spec that rebuilds it.

    ``width``/``depth`` left as ``None`` take the zoo's defaults; the spec holds the model's own
    ``config``, i.e. what a checkpoint records (so its ``depth`` is resolved).
    An unknown name or a bad option is a :class:`ModelError` listing what is available.

    Args:
        name: the zoo variant.
        width: its first-stage width; ``None``: zoo's default.
        depth: its U-Net depth; ``None``: zoo's default.
        options: the variant's own options (``zoo.create``'s keyword arguments); ``None``: none.
    """
    import zoo

    names = available_models()
    if name not in names:
        raise ModelError(f"unknown model {name!r}; available: {', '.join(names)}")
    kwargs: dict[str, Any] = {"in_channels": 3, "out_channels": 1, **(options or {})}
    if width is not None:
        kwargs["width"] = width
    if depth is not None:
        kwargs["depth"] = depth
    try:
        model = zoo.create(name, **kwargs)
    except (TypeError, ValueError) as err:
        raise ModelError(f"cannot build model {name!r} with {kwargs}: {err}") from None
    config = dict(getattr(model, "config", None) or kwargs)
    config.pop("variant", None)
    config.pop("name", None)
    return model, ModelSpec(name, config)


def recorded_options_of(recorded: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """``options`` completed for resuming a run whose model kwargs are ``recorded``: each option
    added to the zoo after the run was recorded (``zoo.registry.RECORDED_BEFORE``) and not set
    in ``options`` takes the run's value (the value every model had then, when the run's kwargs
    lack it), so a run trained before the head norm resumes without one."""
    import zoo

    then = zoo.recorded_options(recorded)
    return {**{key: then[key] for key in zoo.registry.RECORDED_BEFORE}, **options}


def input_spec(size: int, model: ModelSpec, threshold: float) -> InputSpec:
    """The input of a model trained here: ``size`` px squares (stretched), normalised with
    :data:`polypseg.data.NORMALIZE_MEAN` / ``NORMALIZE_STD``, thresholded at ``threshold``."""
    from polypseg.data import NORMALIZE_MEAN, NORMALIZE_STD

    return InputSpec(
        size=size,
        mean=tuple(NORMALIZE_MEAN),
        std=tuple(NORMALIZE_STD),
        threshold=threshold,
        depth=model.depth,
    )
