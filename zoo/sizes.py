"""Input sizes: the one rule every caller of a zoo U-Net checks (and the default depth).

A U-Net of depth ``d`` pools 2x2 ``d`` times. For the model to be *exactly* equivariant to
rot90 (and mirrors), every pooling must tile a rotated image the way it tiles the image itself,
which holds when each side it pools is even at every level: ``H`` and ``W`` divisible by
``2**d``. (The decoder's skip concatenation also needs it: an odd side would come back one
pixel short.) :func:`check_input_size` is that rule, once; the model checks its input with it,
and an application checks a configured size before it builds anything.
"""

from __future__ import annotations

#: Number of 2x2 poolings (and upsamplings) of every variant unless ``depth`` is given.
DEFAULT_DEPTH = 4


def valid_sizes(side: int, depth: int = DEFAULT_DEPTH) -> tuple[int, ...]:
    """The valid sides nearest to ``side``: the multiples of ``2**depth`` just below (when
    positive) and at or above it; ``(side,)`` when ``side`` is valid."""
    step = 2**depth
    lower, upper = side // step * step, -(-side // step) * step
    if lower == upper:
        return (side,)
    return (lower, upper) if lower > 0 else (upper,)


def check_input_size(
    size: int | tuple[int, int], depth: int = DEFAULT_DEPTH, name: str = "input size"
) -> None:
    """``ValueError`` unless ``size`` (a square side, or ``(H, W)``) suits a U-Net of ``depth``.

    Args:
        size: the side of a square image, or its ``(H, W)``; each must be a positive integer
            divisible by ``2**depth``.
        depth: the number of 2x2 poolings of the model (:data:`DEFAULT_DEPTH` by default).
        name: what ``size`` is called in the message (e.g. ``"--size"``, ``"image size"``).

    The message names the size, the rule and the nearest valid sizes, e.g. ``input size 100 is
    not divisible by 2**depth = 16 (depth 4; ...); use e.g. 96 or 112``.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be an integer >= 0, got {depth!r}")
    sides = tuple(size) if isinstance(size, (tuple, list)) else (size,)
    if not sides or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sides):
        raise ValueError(f"{name} must be a positive integer or (H, W), got {size!r}")
    step = 2**depth
    if all(s % step == 0 for s in sides):
        return
    nearest = [valid_sizes(s, depth) for s in sides]
    options = [tuple(n[0] for n in nearest), tuple(n[-1] for n in nearest)]
    hints = list(dict.fromkeys("x".join(map(str, o)) for o in options))
    raise ValueError(
        f"{name} {'x'.join(map(str, sides))} is not divisible by 2**depth = {step} "
        f"(depth {depth}; 2x2 pooling must tile rotated images identically); "
        f"use e.g. {' or '.join(hints)}"
    )
