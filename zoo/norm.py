"""Group batch norm: statistics and affine parameters per field, shared over its ``|G|`` channels.

A per-channel ``BatchNorm2d`` on regular fields breaks equivariance (a rotation permutes the
channels of a field, and each would carry its own mean and scale). Here a map ``(B, C*|G|, H, W)``
is normalised with one mean/variance per field ``c`` over the batch, the group axis and the
image, and one ``weight``/``bias`` per field. Both are invariant under rotating the image and
permuting the group axis, so the layer commutes with the group action (in train mode when the
whole batch is transformed; in eval mode always). With ``|G| = 1`` it is exactly
``nn.BatchNorm2d``.

Two computations of the same map, chosen by the input's memory format:

* contiguous (NCHW) input: viewed as ``(B, C, |G|*H, W)`` and handed to ``F.batch_norm``;
* channels-last (NHWC) input, where that view does not exist (the group axis lies next to the
  field axis, not next to ``H``): :func:`field_batch_norm`, which reduces per channel and sums
  the ``|G|`` channels of a field, and returns a channels-last map. The layout then stays
  channels-last through the whole U-Net, which spares oneDNN a reorder of every activation
  before and after every convolution (on CPU the reorders cost more than the convolutions).

Both give the same output, gradients and running statistics to float rounding (tested).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable


def _per_channel(values: torch.Tensor, group_size: int) -> torch.Tensor:
    """``(C,)`` per-field values -> ``(1, C*|G|, 1, 1)``, repeated over each field's channels."""
    return values.repeat_interleave(group_size).view(1, -1, 1, 1)


def _field_sums(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """``(B, C*|G|, H, W) -> (C,)``: the sum over batch, image and each field's channels."""
    return x.sum((0, 2, 3)).view(-1, group_size).sum(1)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for half-precision inputs (as ``F.batch_norm`` keeps its statistics), else own."""
    return torch.promote_types(x.dtype, torch.float32)


class _FieldBatchNorm(torch.autograd.Function):
    """Batch statistics per field; returns ``(y, mean, biased var)``; analytic backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        group_size: int,
        eps: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, _, h, w = x.shape
        count = b * h * w * group_size
        dtype = _compute_dtype(x)
        xc = x.to(dtype)
        mean = _field_sums(xc, group_size) / count
        centred = xc - _per_channel(mean, group_size)
        var = _field_sums(centred * centred, group_size) / count
        invstd = torch.rsqrt(var + eps)
        scale = invstd if weight is None else weight.to(dtype) * invstd
        y = centred.mul_(_per_channel(scale, group_size))
        if bias is not None:
            y.add_(_per_channel(bias.to(dtype), group_size))
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.group_size = group_size
        ctx.has_bias = bias is not None
        ctx.mark_non_differentiable(mean, var)
        return y.to(x.dtype), mean, var

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        grad_y: torch.Tensor,
        _grad_mean: torch.Tensor,
        _grad_var: torch.Tensor,
    ) -> tuple[torch.Tensor | None, ...]:
        x, weight, mean, invstd = ctx.saved_tensors
        g = ctx.group_size
        b, _, h, w = x.shape
        count = b * h * w * g
        dtype = _compute_dtype(x)
        xs, grads = x.to(dtype), grad_y.to(dtype)
        sum_grad = _field_sums(grads, g)
        # sum(grad * xhat) per field, xhat = (x - mean) * invstd
        dot = (_field_sums(grads * xs, g) - mean * sum_grad) * invstd
        scale = invstd if weight is None else weight.to(dtype) * invstd
        # grad_x = scale * (grad - sum_grad/n - xhat * dot/n) = scale*grad + slope*x + offset
        slope = -scale * invstd * dot / count
        offset = -scale * sum_grad / count - slope * mean
        grad_x = torch.addcmul(_per_channel(offset, g), xs, _per_channel(slope, g))
        grad_x.addcmul_(grads, _per_channel(scale, g))
        wants_weight = weight is not None and ctx.needs_input_grad[1]
        grad_weight = dot.to(weight.dtype) if wants_weight else None
        wants_bias = ctx.has_bias and ctx.needs_input_grad[2]
        grad_bias = sum_grad.to(grad_y.dtype) if wants_bias else None
        return grad_x.to(x.dtype), grad_weight, grad_bias, None, None


def field_batch_norm(
    x: torch.Tensor,
    group_size: int,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    training: bool,
    momentum: float,
    eps: float,
) -> torch.Tensor:
    """``F.batch_norm`` of ``(B, C*|G|, H, W)`` with statistics per field, in any memory format.

    The same arguments and semantics as ``F.batch_norm`` on the ``(B, C, |G|*H, W)`` view:
    ``training`` uses batch statistics (biased variance to normalise, unbiased into the running
    variance, ``running = (1 - momentum) * running + momentum * batch``), otherwise the running
    statistics. The result keeps the memory format of ``x``.
    """
    if training:
        y, mean, var = _FieldBatchNorm.apply(x, weight, bias, group_size, eps)
        if running_mean is not None and running_var is not None:
            b, _, h, w = x.shape
            count = b * h * w * group_size
            with torch.no_grad():
                running_mean.lerp_(mean.to(running_mean.dtype), momentum)
                unbiased = var * (count / max(count - 1, 1))
                running_var.lerp_(unbiased.to(running_var.dtype), momentum)
        return y
    assert running_mean is not None and running_var is not None
    scale = torch.rsqrt(running_var + eps)
    if weight is not None:
        scale = scale * weight
    shift = -running_mean * scale
    if bias is not None:
        shift = shift + bias
    return torch.addcmul(_per_channel(shift, group_size), x, _per_channel(scale, group_size))


def _needs_field_path(x: torch.Tensor) -> bool:
    """Channels-last ``x`` whose ``(B, C, |G|*H, W)`` view would need a copy."""
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


class GroupBatchNorm2d(nn.BatchNorm2d):
    """Batch norm of ``num_fields`` regular fields of ``group_size`` channels each.

    ``(B, num_fields*group_size, H, W) -> same shape`` (and the same memory format).
    Parameters and running statistics have ``num_fields`` entries (the state_dict of a
    ``BatchNorm2d(num_fields)``).

    Args:
        num_fields: the number ``C`` of fields (one mean, variance and affine each).
        group_size: channels per field, ``|G|`` (the statistics pool over all of them).
        eps, momentum, affine, track_running_stats: as for ``nn.BatchNorm2d``.
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
        if self.group_size == 1:
            return super().forward(x)
        if not _needs_field_path(x):
            b, channels, h, w = x.shape
            fields = x.reshape(b, self.num_features, self.group_size * h, w)
            return super().forward(fields).view(b, channels, h, w)
        # channels-last: _BatchNorm.forward's bookkeeping, then the per-field computation
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return field_batch_norm(
            x,
            self.group_size,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            use_batch,
            factor,
            self.eps,
        )

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
