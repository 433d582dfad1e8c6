"""polypseg's DiceCELoss against MONAI's DiceCELoss(sigmoid=True): values and gradients."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss as MonaiDiceCELoss

from polypseg.training.losses import DiceCELoss


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_monai(dtype: torch.dtype, tol: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(4, 1, 24, 16, generator=generator, dtype=dtype)).requires_grad_()
    target = (torch.rand(4, 1, 24, 16, generator=generator) > 0.7).to(dtype)
    target[0] = 0  # an empty mask: only the smoothing terms keep the Dice finite
    target[1] = 1
    ours = DiceCELoss()(logits, target)
    (grad_ours,) = torch.autograd.grad(ours, logits)
    theirs = MonaiDiceCELoss(sigmoid=True)(logits, target)
    (grad_theirs,) = torch.autograd.grad(theirs, logits)
    assert abs(float(ours.detach()) - float(theirs.detach())) <= tol * abs(float(theirs.detach()))
    scale = grad_theirs.abs().max()
    assert float((grad_ours - grad_theirs).abs().max() / scale) <= tol


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="one shape"):
        DiceCELoss()(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5))
