"""Optimiser parameter groups: how each parameter of a zoo model wants to be decayed and stepped.

A module may declare ``optimizer_options``, a dict from the name of one of its *own* parameters
to options for it: ``weight_decay`` (replaces the optimiser's, decoupled as in AdamW) and
``lr_scale`` (multiplies the learning rate). The learned subsets of :mod:`zoo.partial` use it to
keep their logits out of decay, the free pathways of :mod:`zoo.rpp` for their stronger decay.
Every other parameter gets the optimiser's ``lr`` and ``weight_decay``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Parameter groups for ``torch.optim.AdamW(param_groups(model, lr, wd))``.

    The first group holds every parameter without options (in ``model.parameters()`` order) with
    ``lr`` and ``weight_decay``; then one group per distinct option set, in order of first use.
    A model without options gets exactly one group: the same optimiser (and optimiser state) as
    ``AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)``.
    """
    special: dict[int, tuple[float, float]] = {}
    for module in model.modules():
        for name, options in (getattr(module, "optimizer_options", None) or {}).items():
            unknown = set(options) - {"weight_decay", "lr_scale"}
            if unknown:
                raise ValueError(f"{type(module).__name__}: unknown optimizer options {unknown}")
            param = module.get_parameter(name)
            special[id(param)] = (
                float(options.get("weight_decay", weight_decay)),
                float(options.get("lr_scale", 1.0)),
            )
    plain: list[nn.Parameter] = []
    grouped: dict[tuple[float, float], list[nn.Parameter]] = {}
    for param in model.parameters():
        key = special.get(id(param))
        if key is None:
            plain.append(param)
        else:
            grouped.setdefault(key, []).append(param)
    groups = [{"params": plain, "lr": lr, "weight_decay": weight_decay}] if plain else []
    groups += [
        {"params": params, "lr": lr * scale, "weight_decay": decay}
        for (decay, scale), params in grouped.items()
    ]
    return groups


def regularisation(model: nn.Module) -> torch.Tensor | None:
    """The sum of every module's ``regularisation()`` term (a scalar to add to the loss), or
    ``None`` when no module has a non-zero one (e.g. the size prior of :mod:`zoo.partial`)."""
    terms = []
    for module in model.modules():
        term = module.regularisation() if hasattr(module, "regularisation") else None
        if term is not None:
            terms.append(term)
    return torch.stack(terms).sum() if terms else None
