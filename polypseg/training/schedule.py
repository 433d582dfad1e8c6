"""Learning-rate schedule: linear warm-up then cosine decay, stepped once per optimiser step."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimiser step ``step`` (0-based).

    Rises linearly from ``1/(warmup_steps+1)`` to 1 over ``warmup_steps`` steps, then follows a
    half cosine from 1 down to ``min_ratio`` at ``total_steps``; stays at ``min_ratio`` after.

    Args:
        step: the optimiser step (0-based).
        warmup_steps: steps of the linear warm-up.
        total_steps: the step at which the cosine reaches ``min_ratio``.
        min_ratio: the final multiplier (0.01: 1 % of the peak).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(
    optimizer: Optimizer, warmup_steps: int, total_steps: int, min_ratio: float = 0.01
) -> LambdaLR:
    """A ``LambdaLR`` applying :func:`warmup_cosine_factor`; call ``step()`` after each
    ``optimizer.step()``. Its ``state_dict`` holds only counters (safe for ``weights_only``).

    Args:
        optimizer: the optimiser whose learning rates are scaled (each group's own peak).
        warmup_steps, total_steps, min_ratio: as :func:`warmup_cosine_factor` takes them.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    return LambdaLR(
        optimizer,
        lambda step: warmup_cosine_factor(step, warmup_steps, total_steps, min_ratio),
    )
