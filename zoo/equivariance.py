"""Checking equivariance: transform the input by a group's rot90 (and mirror) elements, compare.

:func:`check_equivariance` is what the tests of every variant and layer use, and what the
author of a new family runs on a model (or a single layer) of it, as e2cnn's
``EquivariantModule.check_equivariance`` does for its modules::

    model = zoo.create("p4", width=2, depth=2).double()
    zoo.check_equivariance(model)  # {(1, False): 3e-16, (2, False): ..., (3, False): ...}

For each element ``g = (k, flip)`` of the rot90 subgroup of ``group`` (rotations by 90, 180 and
270 degrees, and with ``group.flip`` the mirror and its rotations) it computes ``f(g x)`` and
``g f(x)`` and their error ``max|f(g x) - g f(x)| / max|g f(x)|`` (relative to the output's
scale). Conventions are those of :mod:`zoo.groups`: ``g`` acts on an image by mirror
(left-right, if ``flip``) then ``torch.rot90(x, k, dims=(-2, -1))``, and on regular fields
``(B, C*|G|, H, W)`` also by permuting the group axis (a quarter turn rolls it forward by
``|G_rot|/4``); other fields (SO(2) irreps) pass their own action.

Tolerances (:data:`TOLERANCE`): every zoo layer's rot90 and mirror are exact permutations of
pixels and kernel taps, so only float rounding remains: below ``1e-4`` relative in float32 (the
project's requirement) and ``1e-10`` in float64 (measured at most 4e-14 over all variants,
seeds and sizes). A sign slip (a kernel turned one way, the group axis the other) or a
non-equivariant model (the plain U-Net) gives errors of order 1.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from zoo.groups import Group, transform_fields, transform_image

__all__ = [
    "TOLERANCE",
    "EquivarianceError",
    "check_equivariance",
    "equivariance_errors",
    "field_action",
    "relative_error",
    "rot90_elements",
]

#: An element of the rot90 subgroup: ``(quarter_turns, flip)``.
Transform = tuple[int, bool]
#: How an element acts on a tensor: ``act(x, quarter_turns, flip)``.
Action = Callable[[torch.Tensor, int, bool], torch.Tensor]

#: Default relative tolerance of :func:`check_equivariance` per dtype (module docstring).
TOLERANCE: dict[torch.dtype, float] = {torch.float32: 1e-4, torch.float64: 1e-10}


class EquivarianceError(AssertionError):
    """An error of :func:`check_equivariance` above its tolerance."""


def rot90_elements(group: Group, identity: bool = False) -> list[Transform]:
    """The rot90 subgroup's elements: rotations by 90, 180, 270 (and mirrors if ``group.flip``);
    with ``identity``, also ``(0, False)``."""
    out = [(k, False) for k in range(0 if identity else 1, 4)]
    if group.flip:
        out += [(k, True) for k in range(4)]
    return out


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max|actual - expected| / max|expected|`` (shapes must match)."""
    if actual.shape != expected.shape:
        raise ValueError(f"shapes differ: {tuple(actual.shape)} and {tuple(expected.shape)}")
    scale = expected.detach().abs().max().clamp_min(torch.finfo(expected.dtype).tiny)
    return float((actual.detach() - expected.detach()).abs().max() / scale)


def field_action(fields: Group | Action | None) -> Action:
    """``act(x, k, flip)``: on images (scalar maps) for ``None``, on the regular fields of a
    :class:`~zoo.groups.Group`, or ``fields`` itself when it is already an action."""
    if fields is None:
        return transform_image
    if isinstance(fields, Group):
        return lambda x, k, flip: transform_fields(x, fields, k, flip)
    return fields


def equivariance_errors(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    in_fields: Group | Action | None,
    out_fields: Group | Action | None,
    elements: Iterable[Transform],
) -> dict[Transform, float]:
    """``{(k, flip): relative_error(f(g x), g f(x))}`` under ``no_grad`` (no tolerance)."""
    act_in, act_out = field_action(in_fields), field_action(out_fields)
    with torch.no_grad():
        y = f(x)
        return {
            (k, fl): relative_error(f(act_in(x, k, fl)), act_out(y, k, fl)) for k, fl in elements
        }


@contextlib.contextmanager
def _ieee_float32() -> Iterator[None]:
    """Full float32 matmuls and convolutions inside (TF32 off on CUDA), restored after."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def _probe(module: nn.Module) -> torch.Tensor:
    """A seeded ``(2, in_channels, H, W)`` input: H, W valid for ``module.depth`` (if any)."""
    channels = getattr(module, "in_channels", None)
    if not isinstance(channels, int):
        raise ValueError("pass x: the module has no int in_channels to build an input from")
    step = 2 ** int(getattr(module, "depth", 0) or 0)
    h, w = math.ceil(32 / step) * step, (math.ceil(32 / step) + math.ceil(16 / step)) * step
    ref = next((t for t in [*module.parameters(), *module.buffers()] if t.is_floating_point()),
               None)  # fmt: skip
    dtype = ref.dtype if ref is not None else torch.get_default_dtype()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, channels, h, w, generator=gen, dtype=dtype)
    return x.to(ref.device) if ref is not None else x


def check_equivariance(
    module: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor | None = None,
    *,
    group: Group | None = None,
    in_fields: Group | Action | None = None,
    out_fields: Group | Action | None = None,
    elements: Iterable[Transform] | None = None,
    tolerance: float | None = None,
) -> dict[Transform, float]:
    """Errors of ``module(g x)`` against ``g module(x)``; ``EquivarianceError`` above tolerance.

    Args:
        module: a model (image in, logits out) or a layer (see ``in_fields``/``out_fields``),
            run in its current mode under ``no_grad`` (in train mode the whole batch is
            transformed at once, so batch statistics are invariant; running statistics are
            updated as by any forward).
        x: the input, ``(B, C, H, W)``; by default a seeded normal batch of 2 with
            ``module.in_channels`` channels, of the module's dtype and device, 32 x 48 pixels
            (sides rounded up to multiples of ``2**module.depth``).
        group: whose rot90 elements to check; by default the regular fields' group
            (``out_fields``, else ``in_fields``), else ``module.group``.
        in_fields: how an element acts on the input: ``None`` for an image (scalar channels),
            a :class:`~zoo.groups.Group` for its regular fields, or an action
            ``act(x, quarter_turns, flip)``.
        out_fields: the same for the output (``None``: logits or any scalar map).
        elements: the ``(quarter_turns, flip)`` to check; by default
            ``rot90_elements(group)`` (3, or 7 with mirrors).
        tolerance: the largest relative error accepted; by default :data:`TOLERANCE` of the
            input's dtype; ``math.inf`` only measures.

    Returns ``{(quarter_turns, flip): relative error}`` for every element checked.
    """
    if group is None:
        group = next((g for g in (out_fields, in_fields) if isinstance(g, Group)), None)
        group = group if group is not None else getattr(module, "group", None)
        if not isinstance(group, Group):
            raise ValueError("pass group: the module has no zoo.groups.Group in .group")
    if x is None:
        if not isinstance(module, nn.Module):
            raise ValueError("pass x: only an nn.Module can say what input it takes")
        x = _probe(module)
    if tolerance is None:
        if x.dtype not in TOLERANCE:
            raise ValueError(f"pass tolerance: no default one for {x.dtype}")
        tolerance = TOLERANCE[x.dtype]
    chosen = rot90_elements(group) if elements is None else list(elements)
    with _ieee_float32():  # TF32 (a CUDA default) alone breaks float32 tolerances
        errors = equivariance_errors(module, x, in_fields, out_fields, chosen)
    failed = {g: e for g, e in errors.items() if not e <= tolerance}
    if failed:
        shown = ", ".join(f"{k * 90} deg{' + mirror' if fl else ''}: {e:.3g}"
                          for (k, fl), e in failed.items())  # fmt: skip
        raise EquivarianceError(f"not equivariant within {tolerance:g} relative ({shown})")
    return errors
