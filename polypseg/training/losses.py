"""The training loss: Dice + binary cross-entropy on one channel of logits, in torch alone.

:class:`DiceCELoss` computes what MONAI's ``DiceCELoss(sigmoid=True)`` computes for a
single-channel output (the case of every polypseg model; the tests compare the two on random
logits and masks, values and gradients): per image ``1 - (2*sum(p*y) + 1e-5) / (sum(p) +
sum(y) + 1e-5)`` with ``p = sigmoid(logits)``, averaged over the batch, plus the mean of
``BCEWithLogitsLoss``. It lives here because ``import monai`` loads every MONAI subpackage
(transforms, data, apps, ...: about 2 s of CPU before a run's first step); MONAI's metrics are
still what validation and evaluation use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: MONAI's ``smooth_nr`` and ``smooth_dr`` defaults.
SMOOTH = 1e-5


class DiceCELoss(nn.Module):
    """``(B, 1, H, W)`` logits and ``{0, 1}`` masks of the same shape -> a scalar loss.

    ``dice + bce``: the soft Dice loss of ``sigmoid(logits)`` per image and channel (reduced
    over the spatial axes, then averaged) and the mean binary cross-entropy of the logits.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape != target.shape or logits.dim() < 3:
            raise ValueError(
                f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must both be "
                "(B, C, *spatial) of one shape"
            )
        target = target.to(logits.dtype)
        probs = torch.sigmoid(logits)
        spatial = tuple(range(2, logits.dim()))
        overlap = (probs * target).sum(spatial)
        total = probs.sum(spatial) + target.sum(spatial)
        dice = 1.0 - (2.0 * overlap + SMOOTH) / (total + SMOOTH)
        return dice.mean() + F.binary_cross_entropy_with_logits(logits, target)
