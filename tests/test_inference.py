"""Batched prediction and rot90 test-time augmentation."""

from __future__ import annotations

import pytest
import torch

import zoo
from polypseg.inference import (
    forward_logits,
    predict_masks,
    predict_probs,
    resolve_channels_last,
)
from polypseg.options import Tta


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return zoo.create(name, width=2, depth=2).eval()


def test_probabilities_shape_range_and_chunking() -> None:
    model = _model("unet")
    images = torch.randn(5, 3, 16, 16)
    whole = predict_probs(model, images)
    chunked = predict_probs(model, images, batch_size=2)
    assert whole.shape == (5, 1, 16, 16)
    assert float(whole.min()) >= 0.0 and float(whole.max()) <= 1.0
    torch.testing.assert_close(whole, chunked, atol=1e-6, rtol=0)
    masks = predict_masks(model, images)
    assert set(masks.unique().tolist()) <= {0.0, 1.0}


def test_rot90_tta_is_invariant_even_for_a_plain_unet() -> None:
    model = _model("unet")
    x = torch.randn(2, 3, 16, 16)
    plain = predict_probs(model, x)
    tta = predict_probs(model, x, tta="rot90")
    tta_rotated = predict_probs(model, torch.rot90(x, 1, dims=(-2, -1)), tta="rot90")
    torch.testing.assert_close(tta_rotated, torch.rot90(tta, 1, dims=(-2, -1)), atol=1e-5, rtol=0)
    assert not torch.allclose(plain, tta, atol=1e-4)  # the plain U-Net is not invariant


def test_rot90_tta_changes_nothing_for_p4() -> None:
    model = _model("p4")
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(predict_probs(model, x, tta="rot90"), predict_probs(model, x),
                               atol=1e-5, rtol=0)


def test_unknown_tta_is_a_value_error() -> None:
    # the one look-up's wording (polypseg.options), naming what is accepted
    with pytest.raises(ValueError, match=r"^tta is 'none' or 'rot90', got 'flip'$"):
        predict_probs(_model("unet"), torch.randn(1, 3, 16, 16), tta="flip")


def test_tta_is_the_enum_or_its_string_and_none_means_none() -> None:
    model, x = _model("unet"), torch.randn(2, 3, 16, 16)
    plain, rot90 = predict_probs(model, x), predict_probs(model, x, tta="rot90")
    assert not torch.allclose(plain, rot90, atol=1e-4)
    torch.testing.assert_close(predict_probs(model, x, tta=Tta.ROT90), rot90, atol=0, rtol=0)
    for none in ("none", Tta.NONE):
        torch.testing.assert_close(predict_probs(model, x, tta=none), plain, atol=0, rtol=0)


@pytest.mark.parametrize("training", [True, False])
def test_the_callers_model_comes_back_in_its_mode(training: bool) -> None:
    model = _model("p4").train(training)
    model.final_norm = torch.nn.BatchNorm2d(1).train(not training)  # one module the other way
    modes = {name: m.training for name, m in model.named_modules()}
    x = torch.randn(2, 3, 16, 16)
    predict_probs(model, x, tta="rot90")
    assert {name: m.training for name, m in model.named_modules()} == modes
    with pytest.raises(ValueError, match="not divisible"):  # and when the model raises
        predict_masks(model, torch.randn(1, 3, 16, 10))
    assert {name: m.training for name, m in model.named_modules()} == modes


def test_a_train_mode_model_predicts_as_in_eval_mode() -> None:
    model, x = _model("unet"), torch.randn(2, 3, 16, 16)
    in_eval = predict_probs(model, x)
    torch.testing.assert_close(predict_probs(model.train(), x), in_eval, atol=0, rtol=0)
    assert model.training


# -- memory format: channels-last against NCHW ------------------------------------------------

#: Logits of the two memory formats agree to float32 rounding: this much, relative to the
#: largest logit (the kernels sum in other orders; measured 1e-7 to 7e-6 on these models).
LAYOUT_RTOL = 5e-6


def _trained_like(name: str, **options: object) -> torch.nn.Module:
    """A tiny model whose batch-norm statistics sit off their defaults (as after training), so
    that every norm, the head norm included, changes the logits."""
    torch.manual_seed(0)
    model = zoo.create(name, width=2, depth=2, **options)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, 32, 32) * 2 + 0.5)
    return model.eval()


class _LayoutProbe(torch.nn.Module):
    """Wraps a model and records whether each input it gets is channels-last."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(not x.is_contiguous() and x.is_contiguous(
            memory_format=torch.channels_last))
        return self.model(x)


@pytest.mark.parametrize(
    ("name", "options"),
    [("p4", {}), ("p4", {"head_norm": False}), ("steerable", {}), ("unet", {})],
)
def test_channels_last_matches_nchw(name: str, options: dict) -> None:
    model = _trained_like(name, **options)
    assert isinstance(model.pool_norm, torch.nn.BatchNorm2d) == options.get("head_norm", True)
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        nchw = forward_logits(model, x, channels_last=False)
        last = forward_logits(model, x, channels_last=True)
    assert last.is_contiguous() and last.shape == (3, 1, 32, 32)
    scale = float(nchw.abs().max())
    assert float((last - nchw).abs().max()) <= LAYOUT_RTOL * max(scale, 1.0)
    # masks: identical except where a probability sits within rounding of the threshold
    p_nchw = predict_probs(model, x, channels_last=False)
    p_last = predict_probs(model, x, channels_last=True)
    threshold = float(p_nchw.median())  # half the pixels each side: the masks hold both values
    m_nchw = predict_masks(model, x, threshold=threshold, channels_last=False)
    m_last = predict_masks(model, x, threshold=threshold, channels_last=True)
    tie = (p_nchw - threshold).abs() <= 2e-6
    assert torch.equal(m_nchw[~tie], m_last[~tie])
    assert 0 < int(m_nchw.sum()) < m_nchw.numel()
    torch.testing.assert_close(p_last, p_nchw, atol=2e-6, rtol=0)


def test_channels_last_is_the_cpu_default_and_reaches_the_model() -> None:
    probe = _LayoutProbe(_trained_like("p4"))
    x = torch.randn(2, 3, 32, 32)
    assert resolve_channels_last(None, torch.device("cpu")) is True
    assert resolve_channels_last(None, torch.device("cuda")) is False  # not measured there
    assert resolve_channels_last(False, torch.device("cpu")) is False
    predict_probs(probe, x)
    predict_probs(probe, x, channels_last=False)
    predict_probs(probe, x, tta="rot90")  # each rotation goes channels-last too
    assert probe.seen == [True, False, True, True, True, True]


def test_tta_parity_across_layouts() -> None:
    model = _trained_like("unet")
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(predict_probs(model, x, tta="rot90", channels_last=True),
                               predict_probs(model, x, tta="rot90", channels_last=False),
                               atol=2e-6, rtol=0)
