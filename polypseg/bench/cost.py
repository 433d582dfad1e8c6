"""Training-step cost of a plan's entries, measured side by side, and compute matching.

A parameter-matched group U-Net does several times the arithmetic of the plain one (a p4 layer
with the parameters of a plain layer has twice the channels), so the fair peer at equal compute
is a *wider* plain U-Net. :func:`step_times` times one training step as ``polypseg train`` runs
it on a CPU (forward, backward, AdamW update, the Dice + CE loss, channels-last batches, the
tuned allocator; the plan's batch, size and depth) of several models, interleaved
repeat by repeat so that a drifting machine affects all of them alike, as CPU time of the
calling thread with one torch thread (other processes' load does not count).
:func:`match_step_time` picks the width of a variant whose step costs what a reference's does.

The figures are medians over repeats; ratios to a reference measured in the same process are
the numbers to compare across machines.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from polypseg.errors import PolypsegError

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TimedModel:
    """One model to time: a name for the tables, its variant, width and depth (``None``: the
    zoo's default), built as ``zoo.create`` builds it today (not a recorded
    :class:`~polypseg.checkpoint.ModelSpec`, whose missing options mean those of its time)."""

    name: str
    variant: str
    width: int
    depth: int | None = None


def _quiet(_message: str) -> None:
    pass


def step_times(
    models: Sequence[TimedModel],
    *,
    size: int,
    batch_size: int,
    repeats: int = 5,
    warmup: int = 1,
    seed: int = 0,
    progress: Progress = _quiet,
) -> list[dict[str, Any]]:
    """Median CPU seconds of one training step of each model, interleaved.

    Returns, per model in order: ``name``, ``variant``, ``width``, ``depth``, ``params``,
    ``step_seconds`` (median), ``step_seconds_all`` (every timed repeat) and
    ``seconds_per_image``. Runs with one torch thread; the thread's CPU time is measured.

    Args:
        models: the models to time, built in this order with ``zoo.create`` (at least one).
        size: side in pixels of the square random batch, ``(batch_size, 3, size, size)``.
        batch_size: images per training step.
        repeats: timed rounds; each round times one step of every model in turn.
        warmup: untimed rounds before them.
        seed: seed of the batch and of every model's initial weights.
        progress: called with one line per model built and per timed round.
    """
    import torch

    import zoo
    from polypseg.training.losses import DiceCELoss
    from polypseg.training.performance import (
        channels_last_default,
        memory_format,
        tune_allocator,
    )

    if not models:
        raise PolypsegError("nothing to time: give at least one model")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tune_allocator()  # the training path's settings: same allocator, same memory format
        layout = memory_format(channels_last_default(torch.device("cpu")))
        generator = torch.Generator().manual_seed(seed)
        images = torch.randn(batch_size, 3, size, size, generator=generator).contiguous(
            memory_format=layout)
        masks = (torch.rand(batch_size, 1, size, size, generator=generator) > 0.7).float()
        loss_fn = DiceCELoss()
        built = []
        for spec in models:
            kwargs = {} if spec.depth is None else {"depth": spec.depth}
            torch.manual_seed(seed)
            model = zoo.create(spec.variant, in_channels=3, out_channels=1, width=spec.width,
                               **kwargs).train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            built.append((spec, model, optimizer))
            progress(f"built {spec.name} ({spec.variant}, width {spec.width})")

        def one_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> float:
            start = time.thread_time()
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(images), masks).backward()
            optimizer.step()
            return time.thread_time() - start

        timed: list[list[float]] = [[] for _ in built]
        for repeat in range(warmup + repeats):
            for i, (_spec, model, optimizer) in enumerate(built):
                seconds = one_step(model, optimizer)
                if repeat >= warmup:
                    timed[i].append(seconds)
            if repeat >= warmup:
                progress(f"repeat {repeat - warmup + 1}/{repeats}")
    finally:
        torch.set_num_threads(threads)
    rows = []
    for (spec, model, _), seconds in zip(built, timed, strict=True):
        median = statistics.median(seconds)
        rows.append({
            "name": spec.name, "variant": spec.variant, "width": spec.width,
            "depth": spec.depth, "params": zoo.count_parameters(model),
            "step_seconds": median, "step_seconds_all": seconds,
            "seconds_per_image": median / batch_size,
        })
    return rows


def match_step_time(
    reference: TimedModel,
    variant: str,
    widths: Sequence[int],
    *,
    size: int,
    batch_size: int,
    depth: int | None = None,
    repeats: int = 5,
    warmup: int = 1,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """The width of ``variant`` (among ``widths``) whose training step costs what
    ``reference``'s does: the one whose median time ratio is nearest 1 on a log scale.

    Returns ``{"width": W, "reference": row, "candidates": [row + "ratio", ...]}``.

    Args:
        reference: the model whose step time is matched.
        variant: the variant whose width is chosen.
        widths: the candidate widths of ``variant`` (at least one).
        size, batch_size, repeats, warmup, progress: as :func:`step_times` takes them.
        depth: U-Net depth of the candidates; ``None``: zoo's default.
    """
    if not widths:
        raise PolypsegError("give at least one candidate width")
    candidates = [TimedModel(f"{variant}-w{w}", variant, int(w), depth) for w in widths]
    rows = step_times([reference, *candidates], size=size, batch_size=batch_size,
                      repeats=repeats, warmup=warmup, progress=progress)
    ref, others = rows[0], rows[1:]
    for row in others:
        row["ratio"] = row["step_seconds"] / ref["step_seconds"]
    best = min(others, key=lambda r: abs(math.log(r["ratio"])))
    return {"width": best["width"], "reference": ref, "candidates": others}


def parse_widths(text: str) -> list[int]:
    """``"8:20"`` (stop excluded) or ``"8,10,12"`` -> a list of widths >= 1."""
    try:
        if ":" in text:
            start, stop = (int(p) for p in text.split(":"))
            widths = list(range(start, stop))
        else:
            widths = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise PolypsegError(f"widths must be 'START:STOP' or 'W1,W2,...', got {text!r}") from None
    if not widths or min(widths) < 1:
        raise PolypsegError(f"widths must be >= 1 and not empty, got {text!r}")
    return widths
