"""zoo.optim: optimiser parameter groups and the loss regulariser that zoo layers ask for."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from zoo.optim import param_groups, regularisation
from zoo.partial import LOGIT_LR_SCALE


def _names(model: nn.Module, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {name for name, p in model.named_parameters() if id(p) in ids}


@pytest.mark.parametrize("name", ["unet", "p4", "se2n12"])
def test_a_model_without_options_gets_one_group(name) -> None:
    model = zoo.create(name, width=1, depth=1)
    groups = param_groups(model, 1e-3, 1e-4)
    assert len(groups) == 1 and groups[0]["lr"] == 1e-3 and groups[0]["weight_decay"] == 1e-4
    assert [id(p) for p in groups[0]["params"]] == [id(p) for p in model.parameters()]
    assert regularisation(model) is None


def test_partial_logits_learn_faster_and_are_not_decayed() -> None:
    model = zoo.create("p4-partial", width=1, depth=1)
    plain, logits = param_groups(model, 1e-3, 1e-4)
    assert (plain["lr"], plain["weight_decay"]) == (1e-3, 1e-4)
    assert (logits["lr"], logits["weight_decay"]) == (1e-3 * LOGIT_LR_SCALE, 0.0)
    assert _names(model, logits) == {n for n, _ in model.named_parameters() if "subset" in n}
    assert len(logits["params"]) == 4 * 1 + 2  # one per conv layer at depth 1
    # the size prior: keep_weight * sum(1 - p) over the 3 non-identity elements of every layer
    expected = 1e-3 * 6 * 3 * (1 - torch.sigmoid(torch.tensor(3.0)))
    assert torch.isclose(regularisation(model), expected)
    assert regularisation(zoo.create("p4-partial", width=1, depth=1, keep_weight=0)) is None


def test_rpp_free_pathways_leave_decay_to_their_prior() -> None:
    model = zoo.create("p4-rpp", width=1, depth=1)
    plain, free = param_groups(model, 2e-3, 1e-4)
    assert free["weight_decay"] == 0.0 and free["lr"] == 2e-3
    assert _names(model, free) == {n for n, _ in model.named_parameters() if n.endswith(".free")}
    assert len(plain["params"]) + len(free["params"]) == len(list(model.parameters()))
    assert float(regularisation(model).detach()) == 0.0  # free pathways start at zero
    optimizer = torch.optim.AdamW(param_groups(model, 2e-3, 1e-4))
    assert len(optimizer.param_groups) == 2


def test_unknown_options_are_refused() -> None:
    layer = nn.Linear(2, 2)
    layer.optimizer_options = {"weight": {"momentum": 0.5}}
    with pytest.raises(ValueError, match="unknown optimizer options"):
        param_groups(layer, 1e-3, 0.0)
