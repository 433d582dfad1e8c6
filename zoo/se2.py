"""SE(2,N) convolutions: learned kernels rotated by ``2*pi*g/N`` through a bilinear operator.

The group is ``C_N`` (rotations by multiples of ``2*pi/N``) acting on the plane; a field has
``N`` channels, one per rotation (layout ``(B, C*N, H, W)``, channel ``c*N + g``). A kernel on
the ``k x k`` grid is rotated by a fixed linear operator: rotation of the sample points plus
bilinear interpolation, precomputed once per ``(k, N, disc radius)`` as a sparse
``(N*k*k, k*k)`` matrix (rows ``g*k*k + a``: tap ``a`` of the kernel rotated by ``g``; columns:
taps of the learned kernel). Only taps inside a disc are used (see :func:`disc_mask`), so that
a rotated kernel never needs values from the corners that a square grid cannot rotate into.

Rotation convention (the one of ``torch.rot90(x, 1, dims=(-2, -1))``, i.e. counter-clockwise on
an image shown with row 0 at the top, and of e2cnn): the kernel rotated by ``theta`` is
``(R_theta w)(y, x) = w(cos*y + sin*x, -sin*y + cos*x)`` in centred (row, column) coordinates,
so ``R_{90} w == torch.rot90(w, 1, dims=(-2, -1))``. ``cos`` and ``sin`` are snapped to exact
``0``/``+-1`` at multiples of 90 degrees: those operators are exact permutations of the taps
(restricted to the disc), so for ``N % 4 == 0`` SE(2,N) contains p4 *exactly*:

* lifting ``(B, C_in, H, W) -> (B, C_out*N, H, W)``: ``out[c*N + g] = x * R_g w[c]``;
* group ``(B, C_in*N, H, W) -> (B, C_out*N, H, W)``:
  ``expanded[c*N + g, d*N + h] = R_g w[c, d, (h - g) mod N]``;
* equivariance: ``layer(rot90(x, r)) == roll(rot90(layer(x), r), shifts=r*N//4, dim=group)``,
  i.e. rotating the image by ``r`` quarter turns shifts the group axis *forward* by ``r*N/4``.
  Rotations by other multiples of ``2*pi/N`` hold only approximately (interpolation).

Kernel size: :class:`SE2Family` defaults to ``k = 5``. A 3x3 grid has only the centre and a
ring of 8 taps, so a 30-degree bilinear rotation is crude (a tap moves by half a pixel and is
smeared over 2-4 neighbours) and the disc leaves a 5-tap "plus" sign; 5x5 with the radius-2 disc
has 21 taps on three rings. With the talk's field counts, ``k = 5`` is also what reproduces its
16.5M-parameter SE(2,12) U-Net (``12*25 / (4*9) = 8.3`` times the p4 net's ~2M).

Disc: taps at distance ``<= (k - 1)/2 + DISC_MARGIN`` from the centre, ``DISC_MARGIN = 0.5``
(the disc inscribed in the ``k x k`` square of pixels): for ``k = 5`` all but the 4 corners
(21 taps), for ``k = 3`` all 9. The mask is applied on both sides of the operator (the learned
corner taps are unused and get zero gradient; rotated kernels are zero in the corners).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

from zoo.base import RegularBankConv2d
from zoo.family import ConvPairFamily
from zoo.groups import Group

__all__ = [
    "DEFAULT_KERNEL_SIZE",
    "DEFAULT_N",
    "DISC_MARGIN",
    "SE2Conv",
    "SE2Family",
    "SE2GroupConv",
    "SE2LiftConv",
    "disc_mask",
    "rotation_operator",
    "rotation_operator_dense",
]

DEFAULT_N = 12
DEFAULT_KERNEL_SIZE = 5
#: Disc radius is ``(k - 1)/2 + DISC_MARGIN``; 0.5 = the disc inscribed in the k x k pixel square.
DISC_MARGIN = 0.5
_SNAP = 1e-9


def _check(k: int, n: int) -> None:
    if k < 1 or k % 2 == 0:
        raise ValueError(f"kernel size must be odd and positive (exact rot90 needs it), got {k}")
    if n < 1:
        raise ValueError(f"the number of rotations N must be positive, got {n}")


def _snap(v: float) -> float:
    r = round(v)
    return float(r) if abs(v - r) < _SNAP else v


def disc_mask(k: int, radius: float | None = None) -> np.ndarray:
    """Boolean ``(k, k)`` mask of the taps within ``radius`` of the centre.

    ``radius`` defaults to ``(k - 1)/2 + DISC_MARGIN``. The mask is invariant under rot90.
    """
    radius = _radius(k, radius)
    c = (k - 1) / 2
    yy, xx = np.meshgrid(np.arange(k) - c, np.arange(k) - c, indexing="ij")
    return (yy**2 + xx**2) <= radius**2 + 1e-9


def _radius(k: int, radius: float | None) -> float:
    return (k - 1) / 2 + DISC_MARGIN if radius is None else float(radius)


def rotation_operator_dense(k: int, n: int, radius: float | None = None) -> np.ndarray:
    """The ``(n, k*k, k*k)`` float64 operators: ``rotated_g = op[g] @ w.reshape(k*k)``.

    ``op[g]`` rotates a ``k x k`` kernel by ``2*pi*g/n`` (convention of the module docstring)
    with bilinear interpolation, reading zero outside the grid and the disc; rows (taps of the
    rotated kernel) outside the disc are zero. Cached per ``(k, n, radius)``; read-only.
    """
    _check(k, n)
    return _operator_dense(k, n, _radius(k, radius))


@functools.cache
def _operator_dense(k: int, n: int, radius: float) -> np.ndarray:
    mask = disc_mask(k, radius).reshape(-1)
    c = (k - 1) / 2
    op = np.zeros((n, k * k, k * k))
    for g in range(n):
        theta = 2 * math.pi * g / n
        cos, sin = _snap(math.cos(theta)), _snap(math.sin(theta))
        for a in range(k * k):
            if not mask[a]:
                continue
            y, x = a // k - c, a % k - c
            # source position of tap a, in index coordinates of the learned kernel
            i, j = cos * y + sin * x + c, -sin * y + cos * x + c
            i0, j0 = math.floor(i), math.floor(j)
            di, dj = i - i0, j - j0
            for ii, jj, wgt in (
                (i0, j0, (1 - di) * (1 - dj)),
                (i0 + 1, j0, di * (1 - dj)),
                (i0, j0 + 1, (1 - di) * dj),
                (i0 + 1, j0 + 1, di * dj),
            ):
                if wgt > 1e-12 and 0 <= ii < k and 0 <= jj < k and mask[ii * k + jj]:
                    op[g, a, ii * k + jj] += wgt
    op.setflags(write=False)
    return op


def rotation_operator(
    k: int, n: int, radius: float | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The sparse COO ``(n*k*k, k*k)`` operator (row ``g*k*k + a``), built once per arguments.

    At most 4 non-zeros per row (bilinear); at multiples of 90 degrees exactly one ``1.0`` per
    row inside the disc. The same tensor is shared by every layer with these arguments. It is a
    constant, so modules hold it as a plain attribute, not a buffer: it is in no state_dict, and
    ``DistributedDataParallel`` (which cannot broadcast sparse tensors) never sees it; the layers
    use a cached copy on their weight's device and dtype (:func:`_operator_like`).
    """
    _check(k, n)
    return _operator(k, n, _radius(k, radius), dtype)


@functools.cache
def _operator(k: int, n: int, radius: float, dtype: torch.dtype) -> torch.Tensor:
    with torch.inference_mode(False):  # a constant for autograd too, whatever mode asked first
        dense = torch.tensor(_operator_dense(k, n, radius), dtype=dtype).reshape(n * k * k, -1)
        return dense.to_sparse_coo().coalesce()


@functools.lru_cache(maxsize=64)
def _operator_like(op: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``op`` on ``device`` in ``dtype``, made once per (operator, dtype, device)."""
    with torch.inference_mode(False):
        return op.to(device=device, dtype=dtype)


def expansion_index(n: int, in_fields: int, lifting: bool) -> torch.Tensor:
    """The gather from the rotated kernels to the expanded bank's input axis, ``(N*C_in*S_in,)``.

    The rotated kernels of one output field are ``(C_in*S_in*N, k*k)`` (rows ``(d, h', g)``:
    input field ``d``, its kernel for input channel ``h'``, rotated by ``g``; ``S_in = 1`` when
    lifting, else ``N``); row ``(g, d, h)`` of the expanded bank is ``(d, (h - g) mod S_in,
    g)``: each kernel rotated by ``g`` with its input group axis rolled by ``g``.
    """
    in_size = 1 if lifting else n
    g = torch.arange(n).view(n, 1, 1)
    d = torch.arange(in_fields).view(1, in_fields, 1)
    h = torch.arange(in_size).view(1, 1, in_size)
    return ((d * in_size + (h - g) % in_size) * n + g).reshape(-1)


class SE2Conv(RegularBankConv2d):
    """The SE(2,N) conv (lift or group, :attr:`~zoo.base.FieldConv2d.lifting`) to regular fields.

    Lift, ``(B, C_in, H, W) -> (B, C_out*N, H, W)``: ``out[:, c*N + g] = conv(x, R_g
    weight[c])``, ``weight`` ``(C_out, C_in, k, k)``. Group conv, ``(B, C_in*N, H, W) -> (B,
    C_out*N, H, W)``: ``weight`` ``(C_out, C_in, N, k, k)`` and the expanded bank
    ``expanded[c*N + g, d*N + h] = R_g weight[c, d, (h - g) mod N]`` (each kernel rotated
    spatially by ``g``, its input group axis rolled by ``g``). Taps outside the disc are unused.
    Equivariance: ``rot90(x, r)`` (for a group conv with its group axis rolled forward by
    ``r*N/4``) maps to ``rot90`` of the output with the group axis rolled forward by ``r*N/4``
    (exactly, for ``N % 4 == 0``). The rotation operator is a constant attribute, not a buffer
    (:func:`rotation_operator`).

    Args:
        in_fields: the number ``C_in`` of input fields (image channels for the lift).
        out_fields: the number ``C_out`` of output fields.
        kernel_size: the odd kernel size ``k``.
        n: the number of rotations ``N`` (a multiple of 4 for exact rot90 equivariance).
        bias: learn a bias per output field (repeated over its ``N`` channels).
        radius: the radius of the disc of taps used (:func:`disc_mask`; ``None``: inscribed).
    """

    index: torch.Tensor

    def __init__(
        self,
        in_fields: int,
        out_fields: int,
        kernel_size: int = DEFAULT_KERNEL_SIZE,
        n: int = DEFAULT_N,
        bias: bool = True,
        radius: float | None = None,
    ) -> None:
        _check(kernel_size, n)
        n_taps = int(disc_mask(kernel_size, radius).sum())
        super().__init__(in_fields, out_fields, kernel_size, n, bias, n_taps, bias_first=True)
        self.n = n
        self.group = Group(n)
        self.radius = radius
        self.operator = rotation_operator(kernel_size, n, radius)
        self.n_taps = n_taps
        index = expansion_index(n, in_fields, self.lifting)
        self.register_buffer("index", index, persistent=False)

    def _rotate(self, w: torch.Tensor) -> torch.Tensor:
        """``(M, k*k) -> (M, N*k*k)``: every row rotated by every ``g`` (columns ``g*k*k+a``)."""
        op = self.operator
        if op.dtype != w.dtype or op.device != w.device:  # e.g. float64 or CUDA weights
            op = _operator_like(op, w.dtype, w.device)
        # sparse.mm(op, w^T)^T rather than w @ op^T: transposing the sparse buffer fails under
        # torch.inference_mode ("Cannot set version_counter for inference tensor").
        return torch.sparse.mm(op, w.t()).t()

    def expand(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``weight -> (C_out*N, C_in*S_in, k, k)``: one matmul, one gather."""
        k, n, c_out = self.kernel_size, self.n, self.out_fields
        rot = self._rotate(self.weight.reshape(-1, k * k))  # (c, d, h') x (g, a)
        rot = rot.reshape(c_out, -1, k * k)  # (c, (d, h', g), a)
        w = rot.index_select(1, self.index)  # (c, (g, d, h), a)
        return w.reshape(c_out * n, self.in_channels, k, k), self.expanded_bias()


class SE2LiftConv(SE2Conv):
    """Image to SE(2,N) fields, :class:`SE2Conv` with ``in_fields`` image channels."""

    lifting = True


class SE2GroupConv(SE2Conv):
    """SE(2,N) fields to fields, :class:`SE2Conv` with ``in_fields`` regular fields."""

    lifting = False


class SE2Family(ConvPairFamily):
    """:class:`zoo.family.ConvFamily` of SE(2,N): regular fields of ``C_N``, ``|G| = N``.

    Args:
        n: the number of rotations ``N`` (12 for ``se2n12``); a multiple of 4 for exact rot90
            equivariance.
        kernel_size: the (odd) kernel size when the skeleton passes none (5, see the module
            docstring); an explicit ``kernel_size`` argument to :meth:`lift`/:meth:`conv` wins.
        bias: give every conv a per-field bias (off: group batch norm follows in the U-Net).
        radius: the radius of the disc of kernel taps used (:func:`disc_mask`; ``None``: the
            disc inscribed in the ``k x k`` square).
    """

    lift_conv = SE2LiftConv
    group_conv = SE2GroupConv

    def __init__(
        self,
        n: int = DEFAULT_N,
        kernel_size: int = DEFAULT_KERNEL_SIZE,
        bias: bool = False,
        radius: float | None = None,
    ) -> None:
        _check(kernel_size, n)
        self.n = n
        self.group = Group(n)
        self.kernel_size = kernel_size
        self.bias = bias
        self.radius = radius

    def conv_options(self) -> dict[str, Any]:
        """Every conv's ``n``, ``bias`` and ``radius``."""
        return {"n": self.n, "bias": self.bias, "radius": self.radius}

    def __repr__(self) -> str:
        return f"SE2Family(n={self.n}, kernel_size={self.kernel_size})"
