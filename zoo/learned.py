"""What a model learned about its symmetry, layer by layer (partial subsets, free pathways).

:func:`learned_symmetry` lists every layer that can learn to leave its group:

* a learned subset (:class:`~zoo.partial.GroupSubset`, the ``*-partial`` variants): the
  probability ``p(g)`` of every group element and the deterministic subset the model uses in
  eval mode (``p > 1/2``; the identity always);
* a residual pathway (:class:`~zoo.rpp.ResidualPathwayConv`, ``p4-rpp``): the Frobenius norms
  of the free and the equivariant expanded filter banks and their ratio.

A model of any other variant has no such layer: the list is empty. ``zoo`` imports nothing of
``polypseg``; the CLI's ``polypseg inspect`` formats these rows.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from zoo.partial import GroupSubset, element_names
from zoo.rpp import ResidualPathwayConv


def layer_label(path: str) -> str:
    """A readable name of the U-Net layer at module ``path``.

    ``encoder.1.2.1`` (stage 1, its second conv block, the norm) -> ``encoder 1 conv 2``;
    ``decoder.0.0.0`` -> ``decoder 0 conv 1``. The encoder's stages after the first start with
    their pooling, so their conv blocks are numbered from the block's index. Other paths are
    returned unchanged.
    """
    parts = path.split(".")
    if len(parts) >= 3 and parts[0] in ("encoder", "decoder") and parts[1].isdigit():
        stage, block = int(parts[1]), int(parts[2]) if parts[2].isdigit() else None
        if block is not None:
            offset = 0 if parts[0] == "decoder" or stage == 0 else -1  # the pooling comes first
            return f"{parts[0]} {stage} conv {block + offset + 1}"
    return path


def learned_symmetry(model: nn.Module) -> list[dict[str, Any]]:
    """One dict per layer that learns its symmetry, in module order (empty for other variants).

    Subset layers: ``{"layer", "path", "kind": "subset", "group", "elements", "probabilities",
    "kept"}`` (``elements`` are names such as ``"90°"``; ``kept`` the eval-mode subset).
    Residual layers: ``{"layer", "path", "kind": "residual", "free_norm", "equivariant_norm",
    "ratio"}``.
    """
    rows: list[dict[str, Any]] = []
    for path, module in model.named_modules():
        if isinstance(module, GroupSubset):
            owner = path.rpartition(".")[0]
            probs = module.probabilities().detach().cpu().tolist()
            names = element_names(module.group)
            kept = module.kept().cpu().tolist()
            rows.append({
                "layer": layer_label(owner),
                "path": owner,
                "kind": "subset",
                "group": module.group.name,
                "elements": names,
                "probabilities": [round(p, 6) for p in probs],
                "kept": [n for n, k in zip(names, kept, strict=True) if k],
            })  # fmt: skip
        elif isinstance(module, ResidualPathwayConv):
            free, equivariant, ratio = module.free_ratio()
            rows.append({
                "layer": layer_label(path),
                "path": path,
                "kind": "residual",
                "free_norm": free,
                "equivariant_norm": equivariant,
                "ratio": ratio,
            })  # fmt: skip
    return rows
