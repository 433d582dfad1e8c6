"""polypseg.modes: a model's mode for one block, then every module's own mode back."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from polypseg.modes import eval_mode, train_mode


def _modes(model: nn.Module) -> dict[str, bool]:
    return {name: module.training for name, module in model.named_modules()}


def _mixed() -> nn.Sequential:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.BatchNorm2d(2), nn.ReLU()))
    model[1][0].eval()  # a frozen norm inside a training model
    return model


@pytest.mark.parametrize("mode", [eval_mode, train_mode])
def test_every_module_gets_its_own_mode_back(mode) -> None:
    model = _mixed()
    before = _modes(model)
    with mode(model) as inside:
        assert inside is model
        assert {m.training for m in model.modules()} == {mode is train_mode}
    assert _modes(model) == before
    with pytest.raises(RuntimeError, match="boom"), mode(model):
        raise RuntimeError("boom")
    assert _modes(model) == before


def test_a_model_already_in_the_mode_keeps_its_cached_filters() -> None:
    # train(False) drops a zoo conv's cached expanded filter; an eval model is left alone
    model = zoo.create("p4", width=2, depth=1).eval()
    conv = next(m for m in model.modules() if isinstance(m, zoo.ExpandedConv2d))
    with torch.no_grad(), eval_mode(model):
        model(torch.randn(1, 3, 8, 8))
    cached = conv._cache
    assert cached is not None
    with eval_mode(model):
        pass
    assert conv._cache is cached
