"""Group batch norm: statistics and affine parameters per field, shared over its ``|G|`` channels.

A per-channel ``BatchNorm2d`` on regular fields breaks equivariance (a rotation permutes the
channels of a field, and each would carry its own mean and scale). Here a map ``(B, C*|G|, H, W)``
is normalised as ``(B, C, |G|*H, W)``: one mean/variance per field ``c`` over the batch, the
group axis and the image, one ``weight``/``bias`` per field. Both are invariant under rotating
the image and permuting the group axis, so the layer commutes with the group action (in train
mode when the whole batch is transformed; in eval mode always). With ``|G| = 1`` it is exactly
``nn.BatchNorm2d``.
"""

from __future__ import annotations

import torch
from torch import nn


class GroupBatchNorm2d(nn.BatchNorm2d):
    """Batch norm of ``num_fields`` regular fields of ``group_size`` channels each.

    ``(B, num_fields*group_size, H, W) -> same shape``. Parameters and running statistics have
    ``num_fields`` entries (the state_dict of a ``BatchNorm2d(num_fields)``).
    """

    def __init__(
        self,
        num_fields: int,
        group_size: int = 1,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__(num_fields, eps, momentum, affine, track_running_stats)
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C*|G|, H, W) -> (B, C*|G|, H, W)``; statistics per field over (B, |G|, H, W)."""
        b, channels, h, w = x.shape
        fields = x.reshape(b, self.num_features, self.group_size * h, w)
        return super().forward(fields).view(b, channels, h, w)

    @torch.no_grad()
    def to_batchnorm2d(self) -> nn.BatchNorm2d:
        """A per-channel ``BatchNorm2d(C*|G|)`` with each field's stats and affine repeated.

        Identical in eval mode (the deployment case); in train mode it would compute per-channel
        batch statistics instead of per-field ones.
        """
        g = self.group_size
        bn = nn.BatchNorm2d(
            self.num_features * g, self.eps, self.momentum, self.affine, self.track_running_stats
        )
        own = bn.state_dict()  # a subclass's extra tensors (e.g. a subset's logits) stay out
        state = {k: v for k, v in self.state_dict().items() if k in own}
        floating = [t for t in state.values() if t.is_floating_point()]
        if floating:
            bn = bn.to(device=floating[0].device, dtype=floating[0].dtype)
        repeat = {k: v.repeat_interleave(g) for k, v in state.items() if v.is_floating_point()}
        bn.load_state_dict({**state, **repeat})
        return bn.train(self.training)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, group_size={self.group_size}"
