"""Model size and cost: parameters and multiply-accumulates (MACs) of one forward pass.

MACs are counted from the shapes of the convolutions actually run, through forward hooks on
every ``nn.Conv2d`` and :class:`~zoo.base.ExpandedConv2d`: a conv with output ``(C_out, H, W)``
costs ``C_out * H * W * C_in/groups * k_h * k_w`` per image. Batch norm, activations, pooling,
upsampling and the filter expansion (a gather, once per step) are not counted.

The forward that the hooks watch does no arithmetic: it runs an *empty batch*
``(0, C_in, H, W)`` through the model in eval mode, with every expanded conv's ``forward``
replaced, for that call only, by a weightless stand-in that returns zeros of the output shape.
Describing a large model at 256x256 therefore costs neither the convolutions nor the filter
expansion (building the expanded bank of a default SE(2,12) U-Net alone takes seconds and about
a gigabyte), nor a copy of the model.

:func:`describe_variant` gives the same numbers for a variant at any width without building it
at that width (the counts are quadratics of the width), and :func:`match_params` solves that
quadratic for the width of a given parameter count. :func:`count_parameters` is the one
parameter count of ``zoo`` (and of the application built on it).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from zoo.base import ExpandedConv2d, uninitialized
from zoo.registry import create, variant
from zoo.sizes import DEFAULT_DEPTH


def _shape_forward(conv: ExpandedConv2d) -> Callable[[torch.Tensor], torch.Tensor]:
    """A weightless stand-in of ``conv.forward``: ``(B, C_in, H, W) -> zeros (B, C_out, H, W)``."""
    out_channels = conv.out_channels

    def forward(x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], out_channels, x.shape[2], x.shape[3])

    return forward


def conv_macs(module: nn.Module, output: torch.Tensor) -> int:
    """MACs of one conv for one image, from its output ``(B, C_out, H, W)``."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        per_output = module.in_channels // module.groups * kh * kw
    else:  # ExpandedConv2d: in_channels and kernel_size are expanded ints
        per_output = module.in_channels * module.kernel_size**2
    return math.prod(output.shape[1:]) * per_output


def count_macs(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """``(MACs per image, number of convs run)`` for ``model(x)``, counted by hooks."""
    total = [0, 0]

    def hook(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        total[0] += conv_macs(module, output)
        total[1] += 1

    kinds = (nn.Conv2d, ExpandedConv2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return total[0], total[1]


@contextlib.contextmanager
def shape_only(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode with every expanded conv's forward a weightless stand-in; the
    forwards and each module's train/eval mode are restored on exit."""
    modes = [(m, m.training) for m in model.modules()]
    convs = [m for m in model.modules() if isinstance(m, ExpandedConv2d)]
    for conv in convs:
        conv.forward = _shape_forward(conv)  # type: ignore[method-assign]
    try:
        yield model.eval()
    finally:
        for conv in convs:
            del conv.forward
        for module, training in modes:
            module.training = training


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Scalar parameters of ``model``: ``sum(p.numel())``, only those with ``requires_grad``
    when ``trainable_only`` (every parameter of a zoo model is trainable)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _input_channels(model: nn.Module) -> int:
    config = getattr(model, "config", None) or {}
    if "in_channels" in config:
        return int(config["in_channels"])
    if hasattr(model, "in_channels"):
        return int(model.in_channels)
    first = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, ExpandedConv2d)))
    return int(first.in_channels)


def describe(model: nn.Module, size: tuple[int, int] = (256, 256)) -> dict[str, Any]:
    """Size and cost of ``model`` for one ``(in_channels, *size)`` image.

    Returns ``params`` (``sum(p.numel())``), ``trainable_params``, ``macs`` (per image, convs
    only), ``convs`` (how many ran), ``size``, and from the model when it has them:
    ``variant``, ``group``, ``group_size``, ``width``, ``depth``.
    """
    h, w = size
    info: dict[str, Any] = {}
    config = getattr(model, "config", None) or {}
    if "variant" in config:
        info["variant"] = config["variant"]
    group = getattr(model, "group", None)
    if group is not None:
        info["group"] = group.name
    for key in ("group_size", "width", "depth"):
        if hasattr(model, key):
            info[key] = getattr(model, key)
    info["params"] = count_parameters(model)
    info["trainable_params"] = count_parameters(model, trainable_only=True)
    info["size"] = [h, w]
    ref = next(iter(model.state_dict().values()), torch.empty(0))
    dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
    empty = torch.zeros(0, _input_channels(model), h, w, device=ref.device, dtype=dtype)
    with shape_only(model) as shapes:
        info["macs"], info["convs"] = count_macs(shapes, empty)
    return info


#: Counts of :func:`describe` that are quadratic polynomials of the width.
_QUADRATIC = ("params", "trainable_params", "macs")
#: Widths whose models give the quadratics: three to fit, the fourth to check.
_SMALL_WIDTHS = (1, 2, 3, 4)


def _small_models(name: str, size: tuple[int, int], **kwargs: Any) -> list[dict[str, Any]]:
    """:func:`describe` of the variant at every width of :data:`_SMALL_WIDTHS` (uninitialised:
    counting needs shapes, not initial values; the global RNG is left as it was)."""
    with uninitialized(), torch.random.fork_rng(devices=[]):
        return [describe(create(name, width=w, **kwargs), size) for w in _SMALL_WIDTHS]


def _quadratic(counts: Sequence[int], what: str) -> tuple[int, int, int]:
    """``(a, b, c)`` with ``count(w) = a w^2 + b w + c``, from the counts at widths 1..4.

    Every conv's parameters and MACs are bilinear in its in/out fields and the norms and head
    linear, so each count is such a quadratic: fitted on widths 1-3, checked on width 4
    (``RuntimeError`` if it is not one).
    """
    p1, p2, p3, p4 = counts
    second = p3 - 2 * p2 + p1  # 2a
    if second % 2 or second < 0 or p4 - 3 * p3 + 3 * p2 - p1 != 0:  # third difference
        raise RuntimeError(f"{what} is not quadratic in the width")
    a = second // 2
    b = p2 - p1 - 3 * a
    return a, b, p1 - a - b


def describe_variant(
    name: str, size: tuple[int, int] = (256, 256), width: int | None = None, **kwargs: Any
) -> dict[str, Any]:
    """:func:`describe` of ``zoo.create(name, width=width, **kwargs)`` without building it.

    A U-Net's parameters and MACs are exact quadratics of its width (:func:`_quadratic`). They
    are counted on the cheap models of widths 1, 2 and 3, checked on width 4 and evaluated at
    ``width``: a wide model (16M parameters of SE(2,12), 60M of steerable-flip) is never
    allocated or initialised. Widths up to 4 are described directly. The other entries are
    those of the width-1 model, with ``width`` set.
    """
    width = variant(name).default_width if width is None else width
    if width <= 4:
        with uninitialized(), torch.random.fork_rng(devices=[]):
            return describe(create(name, width=width, **kwargs), size)
    small = _small_models(name, size, **kwargs)
    info = dict(small[0], width=width)
    for key in _QUADRATIC:
        a, b, c = _quadratic([d[key] for d in small], f"{key} of {name!r}")
        info[key] = a * width * width + b * width + c
    return info


def match_params(name: str, target_params: int, **kwargs: Any) -> int:
    """The width (>= 1) of variant ``name`` whose parameter count is closest to ``target_params``.

    The count is the quadratic ``a w^2 + b w + c`` of the width (:func:`_quadratic`, from the
    models of widths 1-4), solved for ``target_params``. ``kwargs`` are the other
    :func:`zoo.create` arguments.
    """
    if "width" in kwargs:
        raise ValueError("match_params chooses the width; do not pass one")
    if target_params < 1:
        raise ValueError(f"target_params must be positive, got {target_params}")
    side = 2 ** kwargs.get("depth", DEFAULT_DEPTH)  # parameters do not depend on the size
    small = _small_models(name, (side, side), **kwargs)
    a, b, c = _quadratic([d["params"] for d in small], f"parameter count of {name!r}")

    def predict(w: int) -> int:
        return a * w * w + b * w + c

    if a:
        root = (-b + (b * b - 4 * a * (c - target_params)) ** 0.5) / (2 * a)
    else:
        root = (target_params - c) / b
    root = root.real if isinstance(root, complex) else root
    candidates = {max(1, int(root)), max(1, int(root) + 1)}
    return min(sorted(candidates), key=lambda w: abs(predict(w) - target_params))
