"""Deployment: freeze a zoo model into an equivalent plain torch module (no zoo, no e2cnn).

:func:`export` traces the model with ``torch.fx``, keeping the zoo layers as leaves, and swaps
each leaf for its plain equivalent:

* every :class:`~zoo.base.ExpandedConv2d` (p4, p4m, SE(2,N), steerable) becomes the
  ``nn.Conv2d`` holding its frozen expanded weight (``to_conv2d``);
* every :class:`~zoo.norm.GroupBatchNorm2d` becomes a ``BatchNorm2d(C*|G|)`` with each field's
  statistics and affine repeated over its ``|G|`` channels (identical in eval mode);
* a module with a ``to_plain()`` method becomes what it returns (the norm of a partial layer:
  ``BatchNorm2d`` with its fixed subset folded in, then ``ReLU``);
* torch modules (``Conv2d``, ``ReLU``, ``MaxPool2d``, ``Upsample``) are copied; the rest of the
  forward (concatenation, rotation pooling's reshape + max) is traced into plain torch ops.

The result is a ``torch.fx.GraphModule`` in eval mode whose generated ``forward`` calls torch
alone: it runs, pickles, scripts (``torch.jit.script``) and traces without zoo or e2cnn. Its
output equals the model's eval-mode output to float rounding. It does not check the input size
(H and W must still be divisible by ``2**depth``; otherwise the skip concatenation fails).
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn

from zoo.base import ExpandedConv2d
from zoo.norm import GroupBatchNorm2d

#: Modules that :func:`export` replaces by a plain equivalent.
SWAPPED = (ExpandedConv2d, GroupBatchNorm2d)


class _LeafTracer(fx.Tracer):
    """torch.fx tracer that keeps the swapped zoo layers as single ``call_module`` nodes."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (
            isinstance(m, SWAPPED)
            or hasattr(m, "to_plain")
            or super().is_leaf_module(m, module_qualified_name)
        )


def plain_module(module: nn.Module) -> nn.Module:
    """The torch-only equivalent of one leaf module (eval mode).

    A zoo module may give its own through a ``to_plain()`` method (e.g. the norm of a partial
    layer, :class:`zoo.partial.SubsetNormReLU`); it is used first.
    """
    to_plain = getattr(module, "to_plain", None)
    if callable(to_plain):
        return to_plain()
    if isinstance(module, ExpandedConv2d):
        return module.to_conv2d()
    if isinstance(module, GroupBatchNorm2d):
        return module.to_batchnorm2d()
    if type(module).__module__.split(".")[0] != "torch":
        raise TypeError(f"cannot export {type(module).__name__}: not a torch module")
    return copy.deepcopy(module)


def export(model: nn.Module) -> fx.GraphModule:
    """An equivalent eval-mode module of torch layers only (see the module docstring).

    ``(B, C_in, H, W) -> (B, C_out, H, W)``, the same as ``model.eval()(x)``.
    """
    graph = _LeafTracer().trace(model)
    leaves: dict[str, nn.Module | torch.Tensor] = {}
    for node in graph.nodes:
        # string annotations (``from __future__ import annotations``) would be emitted as
        # unknown names in the generated code, which TorchScript rejects
        node.type = None
        if node.op == "call_module":
            leaves[node.target] = plain_module(model.get_submodule(node.target))
        elif node.op == "get_attr":
            owner, _, name = node.target.rpartition(".")
            value = getattr(model.get_submodule(owner), name)
            leaves[node.target] = value.detach().clone()
    exported = fx.GraphModule(leaves, graph, class_name="Exported" + type(model).__name__)
    return exported.eval()
