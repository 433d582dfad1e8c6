"""Batched prediction and rot90 test-time augmentation."""

from __future__ import annotations

import pytest
import torch

import zoo
from polypseg.inference import predict_masks, predict_probs


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
    with pytest.raises(ValueError, match="unknown tta"):
        predict_probs(_model("unet"), torch.randn(1, 3, 16, 16), tta="flip")
