"""Steerable convolutions on SO(2) irreps fields (``steerable-so2``): no group axis at all.

A field is ``psi_0 + psi_1 + ... + psi_L`` (``L = max_frequency``): ``S = 1 + 2L`` channels,
channel 0 the invariant ``psi_0`` and channels ``2m-1, 2m`` the vector of frequency ``m``, which
a rotation by ``theta`` turns by ``m*theta`` (e2cnn's ``irrep(m)`` of ``Rot2dOnR2(N=-1)``). No
group axis is sampled, so nothing is interpolated; on the pixel grid the layers are exactly
equivariant to rot90 (the kernels are sampled on a rot90-symmetric grid) and approximately to
every other angle.

The convolutions (:class:`SO2Conv`) use e2cnn's kernel basis through the cached basis of
:mod:`zoo.steerable` (:class:`~zoo.steerable.E2Conv`). Since a max over a window or over a
field's channels is not equivariant for vectors, :class:`SO2Family` gives the shared U-Net its
own per-field steps: norm batch norm, norm nonlinearity, average pooling and invariant pooling
(the norms, or the mean over the circle).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from zoo.family import ConvPairFamily
from zoo.groups import Group
from zoo.options import FieldKind, PoolMode, look_up_option
from zoo.steerable import DEFAULT_KERNEL_SIZE, E2Conv, FieldSpace

__all__ = [
    "IrrepBatchNorm",
    "IrrepMeanPool",
    "IrrepNormPool",
    "IrrepNormReLU",
    "SO2Conv",
    "SO2Family",
    "SO2GroupConv",
    "SO2LiftConv",
    "so2_field_size",
    "so2_rotation",
    "so2_transform",
]


def so2_field_size(max_frequency: int) -> int:
    """Channels of one SO(2) irreps field: ``1 + 2 * max_frequency``."""
    return 1 + 2 * max_frequency


def so2_rotation(max_frequency: int, degrees: float) -> torch.Tensor:
    """The float64 ``(S, S)`` matrix by which a rotation by ``degrees`` acts on one field.

    Block diagonal: ``1`` on ``psi_0``, the rotation by ``m * degrees`` on ``psi_m`` (e2cnn's
    ``irrep(m)``); cos and sin are snapped to exact 0/+-1 at multiples of 90 degrees.
    """
    blocks = [torch.ones(1, 1, dtype=torch.float64)]
    for m in range(1, max_frequency + 1):
        angle = math.radians(m * degrees)
        c, s = math.cos(angle), math.sin(angle)
        c, s = (round(v) if abs(v - round(v)) < 1e-12 else v for v in (c, s))
        blocks.append(torch.tensor([[c, -s], [s, c]], dtype=torch.float64))
    return torch.block_diag(*blocks)


def so2_transform(x: torch.Tensor, max_frequency: int, quarter_turns: int) -> torch.Tensor:
    """Rotate an SO(2) field map ``(B, C*S, H, W)`` by ``quarter_turns * 90`` degrees.

    ``torch.rot90(x, quarter_turns, (-2, -1))`` and each field's vectors turned by
    :func:`so2_rotation` (what e2cnn's ``GeometricTensor.transform`` does; tested).
    """
    size = so2_field_size(max_frequency)
    matrix = so2_rotation(max_frequency, 90 * quarter_turns).to(x)
    x = torch.rot90(x, quarter_turns, (-2, -1)).unflatten(1, (-1, size))
    return torch.einsum("ij,bcjhw->bcihw", matrix, x).flatten(1, 2)


class SO2Conv(E2Conv):
    """e2cnn conv to SO(2) irreps fields: ``(B, C_in*S_in, H, W) -> (B, C_out*S, H, W)``.

    ``in_kind``: ``"irreps"`` (``S_in = S = 1 + 2*max_frequency``) or ``"trivial"`` (an image,
    ``S_in = 1``). Kernel basis: e2cnn's SO(2) harmonics times Gaussian rings (its defaults, as
    for :class:`SteerableConv`): with k = 5 angular frequencies up to 2, so a pair
    ``psi_m -> psi_n`` keeps only its frequencies ``|n - m|`` and ``n + m`` that are <= 2.
    Equivariance: ``layer(so2_transform(x, L, r)) == so2_transform(layer(x), L, r)``.

    Args:
        in_fields: the number ``C_in`` of input fields (image channels for trivial inputs).
        out_fields: the number ``C_out`` of output irreps fields.
        kernel_size: the odd kernel size (>= 3; 5 by default).
        max_frequency: the highest frequency ``L`` of a field (>= 1).
        in_kind: ``"irreps"`` fields of the same ``L``, or ``"trivial"`` ones (an image);
            ``None``: ``"trivial"`` for the lift conv (:class:`SO2LiftConv`), ``"irreps"``
            otherwise.
        bias: learn a bias per output field (on its invariant ``psi_0``).
        sigma, frequencies_cutoff, rings, maximum_offset: e2cnn's basis options
            (:class:`~zoo.steerable.E2Conv`).
    """

    def __init__(
        self,
        in_fields: int,
        out_fields: int,
        kernel_size: int = DEFAULT_KERNEL_SIZE,
        max_frequency: int = 2,
        in_kind: FieldKind | str | None = None,
        bias: bool = True,
        sigma: float | list[float] | None = None,
        frequencies_cutoff: float | Callable[[float], float] | None = None,
        rings: list[float] | None = None,
        maximum_offset: int | None = None,
    ) -> None:
        kinds = (FieldKind.IRREPS, FieldKind.TRIVIAL)
        if max_frequency < 1:
            raise ValueError(f"max_frequency must be >= 1, got {max_frequency}")
        if in_kind is None:
            in_kind = FieldKind.TRIVIAL if self.lifting else FieldKind.IRREPS
        super().__init__(
            FieldSpace("SO2", max_frequency),
            look_up_option(in_kind, FieldKind, "in_kind", kinds).value,
            FieldKind.IRREPS.value,
            in_fields,
            out_fields,
            kernel_size,
            bias,
            sigma,
            frequencies_cutoff,
            rings,
            maximum_offset,
        )
        self.max_frequency = max_frequency


class SO2LiftConv(SO2Conv):
    """Image -> SO(2) irreps fields, :class:`SO2Conv` with ``in_fields`` image channels."""

    lifting = True


class SO2GroupConv(SO2Conv):
    """Irreps fields -> irreps fields, :class:`SO2Conv` with ``in_fields`` irreps fields."""

    lifting = False


class IrrepBatchNorm(nn.Module):
    """Batch norm of SO(2) irreps fields ``(B, C*S, H, W)``, equivariant.

    ``psi_0`` (invariant): an ordinary ``BatchNorm2d`` over the ``C`` fields. ``psi_m``, m >= 1:
    no mean is subtracted (the mean of a vector field over rotations is zero, and subtracting a
    batch mean would break equivariance); each vector is divided by the square root of the
    (running, in eval) mean of ``|v|^2`` of its (field, frequency) and scaled by a learned
    ``weight`` (no bias). In train mode it is equivariant when the whole batch rotates.

    Args:
        fields: the number ``C`` of irreps fields.
        max_frequency: the highest frequency ``L`` of a field.
        eps: added to the variance (and to the mean square norms) before the square root.
        momentum: the weight of a batch in the running statistics.
    """

    def __init__(
        self, fields: int, max_frequency: int, eps: float = 1e-5, momentum: float = 0.1
    ) -> None:
        super().__init__()
        self.fields, self.max_frequency = fields, max_frequency
        self.size = so2_field_size(max_frequency)
        self.eps, self.momentum = eps, momentum
        self.invariant = nn.BatchNorm2d(fields, eps=eps, momentum=momentum)
        self.weight = nn.Parameter(torch.ones(fields, max_frequency))
        self.register_buffer("running_sq", torch.ones(fields, max_frequency))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unflatten(1, (self.fields, self.size))
        scalars = self.invariant(x[:, :, 0])
        vectors = x[:, :, 1:].unflatten(2, (self.max_frequency, 2))  # (B, C, L, 2, H, W)
        if self.training and not isinstance(x, torch.fx.Proxy):  # export traces the eval path
            sq = vectors.square().sum(3).mean((0, 3, 4))  # (C, L)
            with torch.no_grad():
                self.running_sq.lerp_(sq.detach(), self.momentum)
        else:
            sq = self.running_sq
        scale = self.weight * torch.rsqrt(sq + self.eps)
        vectors = vectors * scale[None, :, :, None, None, None]
        return torch.cat([scalars.unsqueeze(2), vectors.flatten(2, 3)], dim=2).flatten(1, 2)


def _vector_norms(vectors: torch.Tensor) -> torch.Tensor:
    """``(..., 2, H, W) -> (..., 1, H, W)``: ``sqrt(|v|^2 + 1e-12)`` (smooth at zero)."""
    return torch.sqrt(vectors.square().sum(-3, keepdim=True) + 1e-12)


class _IrrepFields(nn.Module):
    """A module on ``fields`` SO(2) irreps fields of ``S = 1 + 2 * max_frequency`` channels."""

    def __init__(self, fields: int, max_frequency: int) -> None:
        super().__init__()
        self.fields, self.max_frequency = fields, max_frequency
        self.size = so2_field_size(max_frequency)


class IrrepNormReLU(_IrrepFields):
    """Equivariant nonlinearity on SO(2) irreps fields ``(B, C*S, H, W)``.

    ``psi_0``: ReLU. ``psi_m``, m >= 1: norm-ReLU, ``v -> v * relu(|v| - b) / |v|`` with a
    learned threshold ``b = exp(log_threshold) > 0`` per (field, frequency), starting at 0.5
    (e2cnn's ``NormNonLinearity("n_relu")``). Only the norm changes, never the direction.

    Args:
        fields: the number ``C`` of irreps fields.
        max_frequency: the highest frequency ``L`` of a field.
    """

    def __init__(self, fields: int, max_frequency: int) -> None:
        super().__init__(fields, max_frequency)
        self.log_threshold = nn.Parameter(torch.full((fields, max_frequency), math.log(0.5)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unflatten(1, (self.fields, self.size))
        scalars = torch.relu(x[:, :, :1])
        vectors = x[:, :, 1:].unflatten(2, (self.max_frequency, 2))
        norms = _vector_norms(vectors)
        threshold = self.log_threshold.exp()[None, :, :, None, None, None]
        vectors = vectors * (torch.relu(norms - threshold) / norms)
        return torch.cat([scalars, vectors.flatten(2, 3)], dim=2).flatten(1, 2)


class IrrepNormPool(_IrrepFields):
    """Invariant map ``(B, C*S, H, W) -> (B, C*(1 + L), H, W)``: ``psi_0`` and ``|psi_m|``.

    Args:
        fields: the number ``C`` of irreps fields.
        max_frequency: the highest frequency ``L`` of a field.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unflatten(1, (self.fields, self.size))
        vectors = x[:, :, 1:].unflatten(2, (self.max_frequency, 2))
        norms = _vector_norms(vectors).squeeze(-3)  # (B, C, L, H, W)
        return torch.cat([x[:, :, :1], norms], dim=2).flatten(1, 2)


class IrrepMeanPool(_IrrepFields):
    """Invariant map ``(B, C*S, H, W) -> (B, C, H, W)``: the mean of each field over the circle.

    A field ``psi_0 + ... + psi_L`` holds the Fourier coefficients of a function on SO(2); its
    mean over all rotations is the invariant coefficient ``psi_0`` (every other frequency
    averages to zero), as :class:`~zoo.pooling.RotationPool`'s ``"mean"`` is the mean over the
    group axis of a regular field.

    Args:
        fields: the number ``C`` of irreps fields.
        max_frequency: the highest frequency ``L`` of a field.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(1, (self.fields, self.size))[:, :, 0]


class SO2Family(ConvPairFamily):
    """The ``steerable-so2`` family: SO(2) irreps fields in the shared :class:`zoo.unet.UNet`.

    ``group_size = 1 + 2L`` channels per field (no group axis: ``regular_fields`` is false).
    Besides :meth:`lift` and :meth:`conv` (:class:`SO2LiftConv`, :class:`SO2GroupConv`; no
    bias: the norm follows) it overrides the skeleton's per-field hooks:
    :class:`IrrepBatchNorm`, :class:`IrrepNormReLU`,
    2x2 *average* pooling (a max over a window is not equivariant for vectors; an average is
    linear and commutes with rot90 on even grids), the invariant pooling (``"norm"``:
    :class:`IrrepNormPool`, the default; ``"mean"``: :class:`IrrepMeanPool`) and the action of
    rot90 on its fields (:func:`so2_transform`). ``group`` is C4: the subgroup to which the
    model is exactly equivariant.

    Args:
        max_frequency: the highest frequency ``L`` of a field (2: ``psi_0 + psi_1 + psi_2``).
        kernel_size: the kernel size when the skeleton passes none (5).
        bias: give every conv a per-field bias on ``psi_0`` (off: the norm follows).
        **options: e2cnn's basis options for every layer (``sigma``, ``frequencies_cutoff``,
            ``rings``, ``maximum_offset``; :class:`~zoo.steerable.SteerableConv`).
    """

    group = Group(4)
    pool_modes = (PoolMode.NORM, PoolMode.MEAN)
    lift_conv = SO2LiftConv
    group_conv = SO2GroupConv

    def __init__(
        self,
        max_frequency: int = 2,
        kernel_size: int = DEFAULT_KERNEL_SIZE,
        bias: bool = False,
        **options: Any,
    ) -> None:
        if max_frequency < 1:
            raise ValueError(f"max_frequency must be >= 1, got {max_frequency}")
        self.max_frequency, self.kernel_size = max_frequency, kernel_size
        self.options = {"bias": bias, **options}

    @property
    def group_size(self) -> int:
        """``1 + 2L`` channels per field."""
        return so2_field_size(self.max_frequency)

    @property
    def regular_fields(self) -> bool:
        return False

    def conv_options(self) -> dict[str, Any]:
        """Every conv's ``max_frequency``, ``bias`` and basis options."""
        return {"max_frequency": self.max_frequency, **self.options}

    def norm(self, fields: int) -> IrrepBatchNorm:
        return IrrepBatchNorm(fields, self.max_frequency)

    def activation(self, fields: int) -> IrrepNormReLU:
        return IrrepNormReLU(fields, self.max_frequency)

    def downsample(self) -> nn.Module:
        return nn.AvgPool2d(2)

    def invariant_pool(self, fields: int, mode: PoolMode) -> tuple[nn.Module, int]:
        if mode is PoolMode.MEAN:
            return IrrepMeanPool(fields, self.max_frequency), fields
        return IrrepNormPool(fields, self.max_frequency), fields * (1 + self.max_frequency)

    def transform(
        self, x: torch.Tensor, quarter_turns: int = 0, flip: bool = False
    ) -> torch.Tensor:
        if flip:
            raise ValueError("SO(2) irreps fields have no mirror (steerable-so2's group is C4)")
        return so2_transform(x, self.max_frequency, quarter_turns)

    def __repr__(self) -> str:
        return f"SO2Family(max_frequency={self.max_frequency}, kernel_size={self.kernel_size})"
