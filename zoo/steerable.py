"""Steerable convolutions (e2cnn) on regular fields of C_N or D_N, and the cached e2cnn basis.

Group and layout. ``Rot2dOnR2(N)``: the cyclic group ``C_N`` of rotations by ``2*pi*r/N``;
``FlipRot2dOnR2(N)`` (``flip=True``): the dihedral group ``D_N`` (rotations and the mirror in
e2cnn's default vertical axis, ``axis=pi/2``: ``x -> -x``, left and right swapped). A field is
e2cnn's regular representation: ``|G|`` channels, one per group element, in e2cnn's order
``0..N-1`` for C_N and ``[(0, r) for r in 0..N-1] + [(1, r) for r in 0..N-1]`` for D_N
(``(f, r)`` = "mirror ``f`` times, then rotate by ``r``"), laid out ``(B, C*|G|, H, W)``,
channel ``c*|G| + f*N + r`` (the shared layout, also e2cnn's). Group action on a field map
(exactly what e2cnn's ``GeometricTensor.transform`` does):

* rotation by ``s`` steps of ``2*pi/N`` (``torch.rot90(x, 1, (-2, -1))`` is ``s = N/4``):
  ``(rho v)[(f, r)] = v[(f, r - s)]``: both halves rolled *forward* by ``s`` (C_N: one roll);
* mirror ``(1, 0)``: spatially ``torch.flip(x, (-1,))`` (columns reversed), and
  ``(rho v)[(f, r)] = v[(1 - f, -r mod N)]``.

This is :mod:`zoo.groups`' convention (``Group(N, flip)``, ``transform_fields``);
:func:`e2cnn_permutation` reads the permutations off e2cnn's representation matrices, and the
tests check that the two agree and that every layer is exactly equivariant under them.

Kernel basis (e2cnn's defaults, kept): circular harmonics times Gaussian radial rings; for
kernel size ``k`` the rings are at radii ``0, 1, ..., (k-1)//2`` with ``sigma = 0.6`` (0.4 on the
outermost ring, 0.005 at the centre), angular frequencies up to 0 at the centre and up to 2
elsewhere (e2cnn's ``frequencies_cutoff=None`` policy), and all aliased frequencies
(``maximum_offset=None``), which for N = 8 and frequency <= 2 adds none. ``sigma``,
``frequencies_cutoff``, ``rings`` and ``maximum_offset`` are passed through unchanged.

How e2cnn is used. The expanded filter of an ``R2Conv`` between ``C_in`` and ``C_out`` fields
of one type each is ``weights (C_out*C_in, B) @ basis (B, |G_out|*|G_in|*k*k)`` with ``basis`` the
sampled block basis of the (in, out) representation pair, rearranged to
``(C_out*|G_out|, C_in*|G_in|, k, k)``; the bias is ``bias_expansion @ bias``. Building an
``R2Conv`` per layer costs O(C_in*C_out*B) Python work in e2cnn 0.2.3 (ids and He variances:
0.7-2.4 s for one 64x64-field layer, 3 s more for its default init), and e2cnn shares its basis
modules between all layers of the process (``.to(device)`` of one model would move another's).
So each layer here samples the basis once per ``(group, in type, kernel size, basis options)``
through a 1-field ``R2Conv`` (module-level cache, :func:`basis_builds` counts the misses), keeps
its own learnable ``weights``/``bias`` with the same names, shapes and order as ``R2Conv``'s, and
:meth:`~SteerableConv.expand` computes exactly ``R2Conv.expand_parameters()`` (tested against a
real ``R2Conv``: :meth:`~SteerableConv.to_r2conv`). The layer never holds an ``R2Conv``, so
e2cnn's eval-mode ``filter``/``expanded_bias`` buffers never enter the ``state_dict``: its keys
are ``weights`` and ``bias`` in train and in eval mode. He initialisation is e2cnn's
``generalized_he_init`` (its per-weight standard deviation is that of the 1-field layer divided
by ``sqrt(C_in)``; tested equal to e2cnn's).

Continuous SO(2) (``steerable-so2``): fields that are SO(2) irreps, convolved with the same
cached e2cnn basis through :class:`E2Conv` (a :class:`FieldSpace` of kind ``"SO2"``), live in
:mod:`zoo.so2`.

e2cnn 0.2.3 and numpy 2: ``e2cnn.kernels.utils`` calls ``np.array(x, copy=False)`` on Python
floats, which numpy 2 rejects; every ``FlipRot2dOnR2`` basis hits it. Importing this module
points that one e2cnn module's ``np`` at a shim whose ``array(..., copy=False)`` is
``np.asarray`` (numpy 1 semantics); nothing else is touched.

Import time: e2cnn's package ``__init__`` imports its differential operators, which import
sympy (about half a second) for a finite-difference routine zoo never calls. e2cnn is imported
here with sympy hidden, and that one routine of ``e2cnn.diffops.utils`` then imports sympy on
its first call, so e2cnn's differential operators still work in the process, only later.
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.base import FieldConv2d, init_skipped
from zoo.family import ConvPairFamily
from zoo.groups import Group
from zoo.options import FieldKind, look_up_option


class _NumpyCopyFalseShim(types.ModuleType):
    """``numpy`` with numpy-1 semantics for ``np.array(obj, copy=False)`` (= ``np.asarray``)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def array(obj: Any, *args: Any, copy: bool | None = True, **kwargs: Any) -> np.ndarray:
        if copy is False:
            return np.asarray(obj, *args, **kwargs)
        return np.array(obj, *args, copy=copy, **kwargs)


def _patch_e2cnn_for_numpy2() -> None:
    import e2cnn.kernels.utils as kernel_utils

    if not isinstance(kernel_utils.np, _NumpyCopyFalseShim):
        kernel_utils.np = _NumpyCopyFalseShim("numpy")


def _lazy_finite_diff_weights(*args: Any, **kwargs: Any) -> Any:
    from sympy.calculus.finite_diff import finite_diff_weights

    return finite_diff_weights(*args, **kwargs)


def _import_e2cnn_without_sympy() -> None:
    import importlib.util
    import sys

    hide = "sympy" not in sys.modules
    if hide:
        sys.modules["sympy"] = None  # type: ignore[assignment]  # an ImportError inside e2cnn
    try:
        import e2cnn  # noqa: F401
    finally:
        if hide and "sympy" in sys.modules and sys.modules["sympy"] is None:
            del sys.modules["sympy"]
    import e2cnn.diffops.utils as diffop_utils

    if hide and not diffop_utils._SYMPY_AVAILABLE and importlib.util.find_spec("sympy"):
        diffop_utils.finite_diff_weights = _lazy_finite_diff_weights
        diffop_utils._SYMPY_AVAILABLE = True


_import_e2cnn_without_sympy()
_patch_e2cnn_for_numpy2()

from e2cnn import gspaces  # noqa: E402
from e2cnn import nn as enn  # noqa: E402
from e2cnn.nn import init as e2init  # noqa: E402

__all__ = [
    "DEFAULT_KERNEL_SIZE",
    "DEFAULT_N",
    "E2Conv",
    "FieldSpace",
    "SteerableConv",
    "SteerableFamily",
    "SteerableGroupConv",
    "SteerableLiftConv",
    "basis_builds",
    "e2cnn_permutation",
    "gspace",
]

DEFAULT_N = 8
DEFAULT_KERNEL_SIZE = 5


def _check_n(n: int) -> None:
    if n < 4 or n % 4 != 0:
        raise ValueError(
            f"steerable layers need N to be a positive multiple of 4 (so that rot90 is a group "
            f"element and the layers are exactly rot90-equivariant), got N={n}"
        )


@functools.cache
def gspace(n: int, flip: bool = False) -> gspaces.GeneralOnR2:
    """e2cnn's ``Rot2dOnR2(n)`` (C_N) or ``FlipRot2dOnR2(n)`` (D_N, vertical mirror), cached."""
    _check_n(n)
    return gspaces.FlipRot2dOnR2(n) if flip else gspaces.Rot2dOnR2(n)


def e2cnn_permutation(n: int, flip: bool, element: tuple[int, int]) -> torch.Tensor:
    """``perm`` with ``(rho(e) v)[j] = v[perm[j]]``, read off e2cnn's regular representation.

    ``element`` is ``(f, r)`` in :mod:`zoo.groups`' convention (mirror ``f``, then rotate by
    ``r`` steps of ``2*pi/n``), which is also e2cnn's element of ``FlipRot2dOnR2`` (and ``r``
    that of ``Rot2dOnR2``). The tests check that this equals
    ``zoo.groups.Group(n, flip).regular_permutation(element)`` for every element, i.e. that
    e2cnn orders and moves its regular fields exactly as the rest of ``zoo`` does.
    """
    gs = gspace(n, flip)
    f, r = element
    if f and not flip:
        raise ValueError("the mirror is a group element only for the flip (D_N) variant")
    matrix = gs.regular_repr((f, r % n) if flip else r % n)
    return torch.from_numpy(np.argmax(np.asarray(matrix), axis=1))


# -- the cached basis ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSpace:
    """The group of a layer: ``("C", N)``, ``("D", N)`` or ``("SO2", max_frequency)``."""

    kind: str
    order: int


def _space(n: int, flip: bool) -> FieldSpace:
    _check_n(n)
    return FieldSpace("D" if flip else "C", n)


@functools.cache
def _gspace(space: FieldSpace) -> gspaces.GeneralOnR2:
    if space.kind == "SO2":
        return gspaces.Rot2dOnR2(N=-1, maximum_frequency=space.order)
    return gspace(space.order, space.kind == "D")


@functools.cache
def _irreps_repr(max_frequency: int) -> Any:
    """SO(2)'s ``psi_0 + psi_1 + ... + psi_L`` (sizes 1, 2, ..., 2): one irreps field."""
    from e2cnn.group import directsum

    gs = _gspace(FieldSpace("SO2", max_frequency))
    irreps = [gs.irrep(m) for m in range(max_frequency + 1)]
    return directsum(irreps, name=f"zoo_so2_irreps_0_to_{max_frequency}")


@dataclass(frozen=True)
class _BlockBasis:
    """What one (in repr, out repr, k, options) pair contributes, from a 1-field ``R2Conv``."""

    basis: torch.Tensor  # (B, out_size * in_size * k * k), float32
    std: torch.Tensor  # (B,) e2cnn's He std of the 1-field layer
    bias_column: torch.Tensor | None  # (out_size,) field bias expansion, None: no trivial irrep
    in_size: int
    out_size: int


_BUILDS = [0]


def basis_builds() -> int:
    """How many block bases this process has sampled (cache misses of the layer constructor)."""
    return _BUILDS[0]


def _field_type(space: FieldSpace, kind: str, count: int) -> enn.FieldType:
    gs = _gspace(space)
    if kind == FieldKind.TRIVIAL:
        rep = gs.trivial_repr
    elif kind == FieldKind.REGULAR and space.kind != "SO2":
        rep = gs.regular_repr
    elif kind == FieldKind.IRREPS and space.kind == "SO2":
        rep = _irreps_repr(space.order)
    else:
        raise ValueError(f"no {kind!r} fields for the group {space.kind}{space.order}")
    return enn.FieldType(gs, count * [rep])


def _basis_options(
    sigma: float | list[float] | None,
    frequencies_cutoff: float | Callable[[float], float] | None,
    rings: list[float] | None,
    maximum_offset: int | None,
) -> dict[str, Any]:
    return {
        "sigma": sigma,
        "frequencies_cutoff": frequencies_cutoff,
        "rings": rings,
        "maximum_offset": maximum_offset,
    }


@functools.cache
def _block_basis(
    space: FieldSpace,
    in_kind: str,
    out_kind: str,
    k: int,
    sigma: float | tuple[float, ...] | None,
    frequencies_cutoff: float | Callable[[float], float] | None,
    rings: tuple[float, ...] | None,
    maximum_offset: int | None,
) -> _BlockBasis:
    _BUILDS[0] += 1
    conv = enn.R2Conv(
        _field_type(space, in_kind, 1),
        _field_type(space, out_kind, 1),
        k,
        padding=k // 2,
        initialize=False,
        **_basis_options(
            list(sigma) if isinstance(sigma, tuple) else sigma,
            frequencies_cutoff,
            list(rings) if rings is not None else None,
            maximum_offset,
        ),
    )
    dim = conv.basisexpansion.dimension()
    with torch.no_grad():
        # the expansion is linear in the weights: its matrix, row b = expansion of unit vector b
        basis = torch.stack([conv.basisexpansion(w).reshape(-1) for w in torch.eye(dim)])
    std = e2init._generalized_he_init_variances(conv.basisexpansion)
    bias_column = conv.bias_expansion[:, 0].clone() if conv.bias is not None else None
    return _BlockBasis(basis.contiguous(), std, bias_column, conv.in_type.size, conv.out_type.size)


# -- layers --------------------------------------------------------------------------------------


class E2Conv(FieldConv2d):
    """e2cnn steerable conv between homogeneous field types, as a plain-tensor layer.

    A lift conv (:attr:`~zoo.base.FieldConv2d.lifting`) when ``in_kind`` is ``"trivial"``.

    ``(B, C_in*S_in, H, W) -> (B, C_out*S_out, H, W)`` with ``S`` the size of one field.
    Learnable: ``weights`` ``(C_out*C_in*B,)`` and ``bias`` ``(C_out,)`` (one per trivial irrep
    of an output field, i.e. one per field here), named, shaped and ordered as in ``R2Conv``.

    Args:
        space: the group: ``FieldSpace("C", N)``, ``("D", N)`` or ``("SO2", max_frequency)``.
        in_kind: the kind of each input field (:class:`~zoo.options.FieldKind`:
            ``"trivial"``, ``"regular"``, ``"irreps"``).
        out_kind: the kind of each output field.
        in_fields: the number ``C_in`` of input fields.
        out_fields: the number ``C_out`` of output fields.
        kernel_size: the odd kernel size ``k`` (>= 3).
        bias: learn a bias per output field (on its trivial part; none if it has none).
        sigma: the width(s) of the Gaussian radial rings (e2cnn's default: 0.6, 0.4 on the
            outermost ring, 0.005 at the centre).
        frequencies_cutoff: the largest angular frequency per ring radius, a number or a
            function of the radius (e2cnn's default policy when ``None``).
        rings: the ring radii (``0, 1, ..., (k-1)//2`` when ``None``).
        maximum_offset: the largest aliased frequency offset (``None``: all).
    """

    def __init__(
        self,
        space: FieldSpace,
        in_kind: str,
        out_kind: str,
        in_fields: int,
        out_fields: int,
        kernel_size: int,
        bias: bool,
        sigma: float | list[float] | None,
        frequencies_cutoff: float | Callable[[float], float] | None,
        rings: list[float] | None,
        maximum_offset: int | None,
    ) -> None:
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel size must be odd and >= 3, got {kernel_size}")
        block = _block_basis(
            space,
            in_kind,
            out_kind,
            kernel_size,
            tuple(sigma) if isinstance(sigma, list) else sigma,
            frequencies_cutoff,
            tuple(rings) if rings is not None else None,
            maximum_offset,
        )
        lifting = in_kind == FieldKind.TRIVIAL
        super().__init__(in_fields, out_fields, kernel_size, block.out_size, lifting)
        self.space, self.in_kind, self.out_kind = space, in_kind, out_kind
        self._options = _basis_options(sigma, frequencies_cutoff, rings, maximum_offset)
        self.basis_dim = block.basis.shape[0]
        # constants shared by every layer of this kind (not saved: they follow from the options)
        self.register_buffer("basis", block.basis, persistent=False)
        self.weights = nn.Parameter(torch.empty(out_fields * in_fields * self.basis_dim))
        self._block_std = block.std
        if bias and block.bias_column is not None:
            self.register_buffer("bias_column", block.bias_column, persistent=False)
            self.bias = nn.Parameter(torch.zeros(out_fields))
        else:
            self.bias_column = None
            self.bias = None
        if not init_skipped():
            self.reset_parameters()

    def init_std(self) -> torch.Tensor:
        """``(C_out*C_in*B,)``: the std of e2cnn's ``generalized_he_init`` for each weight.

        That of the 1-field layer divided by ``sqrt(C_in)`` (each output irrep sums ``C_in``
        times as many basis elements), in e2cnn's weight order (out field, in field, basis).
        """
        return self._block_std.repeat(self.out_fields * self.in_fields) / math.sqrt(self.in_fields)

    def reset_parameters(self) -> None:
        """e2cnn's init: weights ``N(0, init_std()**2)``, bias zero.

        The per-weight std is broadcast over the ``(C_out*C_in, B)`` weights rather than
        repeated (:meth:`init_std`): the same numbers, without a copy as large as the weights.
        """
        with torch.no_grad():
            std = (self._block_std / math.sqrt(self.in_fields)).to(self.weights)
            noise = torch.randn(
                self.out_fields * self.in_fields, self.basis_dim,
                dtype=self.weights.dtype, device=self.weights.device,
            )
            self.weights.copy_((noise * std).view(-1))
            if self.bias is not None:
                self.bias.zero_()

    def in_type(self) -> enn.FieldType:
        """The e2cnn input field type."""
        return _field_type(self.space, self.in_kind, self.in_fields)

    def out_type(self) -> enn.FieldType:
        """The e2cnn output field type."""
        return _field_type(self.space, self.out_kind, self.out_fields)

    def expand(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``R2Conv.expand_parameters()``: one matmul ``(C_out*C_in, B) @ (B, ...)``, one copy.

        Returns the filter ``(C_out*S_out, C_in*S_in, k, k)`` and bias ``(C_out*S_out,)``.
        """
        k, o, i = self.kernel_size, self.out_size, self.in_size
        c_out, c_in = self.out_fields, self.in_fields
        w = self.weights.view(c_out * c_in, self.basis_dim) @ self.basis
        w = w.view(c_out, c_in, o, i * k * k).transpose(1, 2)
        w = w.reshape(c_out * o, c_in * i, k, k)
        if self.bias is None:
            return w, None
        return w, (self.bias[:, None] * self.bias_column).reshape(-1)

    @torch.no_grad()
    def to_r2conv(self) -> enn.R2Conv:
        """An e2cnn ``R2Conv`` with these weights (slow for wide layers; for interop, tests)."""
        conv = enn.R2Conv(
            self.in_type(),
            self.out_type(),
            self.kernel_size,
            padding=self.kernel_size // 2,
            bias=self.bias is not None,
            initialize=False,
            **self._options,
        ).to(self.weights.device)
        conv.weights.copy_(self.weights)
        if self.bias is not None:
            conv.bias.copy_(self.bias)
        return conv

    def extra_repr(self) -> str:
        kind, order = self.space.kind, self.space.order
        group = f"SO(2) up to frequency {order}" if kind == "SO2" else f"{kind}{order}"
        return (
            f"{self.in_fields} {self.in_kind} -> {self.out_fields} {self.out_kind} fields of "
            f"{group}, k={self.kernel_size}, basis={self.basis_dim}"
        )


class SteerableConv(E2Conv):
    """e2cnn steerable conv ``in_kind`` fields -> regular fields of C_N (or D_N, ``flip``).

    ``(B, C_in*|G_in|, H, W) -> (B, C_out*|G|, H, W)`` with ``|G_in| = |G|`` for regular inputs
    and 1 for trivial ones (an image), ``|G| = N`` (C_N) or ``2N`` (D_N). Equivariance (exact,
    tested): ``layer(transform_fields(x, ...)) == transform_fields(layer(x), ...)`` for every
    rot90 and, with ``flip``, the mirror (:mod:`zoo.groups`).

    Args:
        in_fields: the number ``C_in`` of input fields (image channels for trivial inputs).
        out_fields: the number ``C_out`` of output regular fields.
        kernel_size: the odd kernel size (>= 3; 5 by default: a 3x3 grid carries only rings
            0 and 1 of the basis).
        n: the number of rotations ``N``, a positive multiple of 4 (so that rot90 is a group
            element).
        flip: the dihedral group ``D_N`` (rotations and the mirror) instead of ``C_N``.
        in_kind: ``"regular"`` fields of the same group, or ``"trivial"`` ones (an image);
            ``None``: ``"trivial"`` for the lift conv (:class:`SteerableLiftConv`),
            ``"regular"`` otherwise.
        bias: learn a bias per output field (repeated over its ``|G|`` channels).
        sigma, frequencies_cutoff, rings, maximum_offset: e2cnn's basis options, passed to
            its ``R2Conv`` unchanged (:class:`E2Conv`; ``None``: e2cnn's defaults).
    """

    def __init__(
        self,
        in_fields: int,
        out_fields: int,
        kernel_size: int = DEFAULT_KERNEL_SIZE,
        n: int = DEFAULT_N,
        flip: bool = False,
        in_kind: FieldKind | str | None = None,
        bias: bool = True,
        sigma: float | list[float] | None = None,
        frequencies_cutoff: float | Callable[[float], float] | None = None,
        rings: list[float] | None = None,
        maximum_offset: int | None = None,
    ) -> None:
        kinds = (FieldKind.REGULAR, FieldKind.TRIVIAL)
        if in_kind is None:
            in_kind = FieldKind.TRIVIAL if self.lifting else FieldKind.REGULAR
        space = _space(n, flip)
        super().__init__(
            space,
            look_up_option(in_kind, FieldKind, "in_kind", kinds).value,
            FieldKind.REGULAR.value,
            in_fields,
            out_fields,
            kernel_size,
            bias,
            sigma,
            frequencies_cutoff,
            rings,
            maximum_offset,
        )
        self.n, self.flip = n, flip
        self.group = Group(n, flip)


class SteerableLiftConv(SteerableConv):
    """Image -> regular fields, :class:`SteerableConv` with ``in_fields`` image channels:
    ``(B, C_in, H, W) -> (B, C_out*|G|, H, W)``."""

    lifting = True


class SteerableGroupConv(SteerableConv):
    """Regular fields -> regular fields, :class:`SteerableConv` with ``in_fields`` regular
    fields: ``(B, C_in*|G|, H, W) -> (B, C_out*|G|, H, W)``."""

    lifting = False


class SteerableFamily(ConvPairFamily):
    """:class:`zoo.family.ConvFamily` of e2cnn regular fields of ``C_N`` (``D_N`` with ``flip``):
    ``|G| = N`` (``2N``); every other hook is the default of regular fields.

    Args:
        n: the number of rotations ``N`` (a positive multiple of 4; 8 for ``steerable``).
        flip: add the mirror: ``D_N`` instead of ``C_N`` (``steerable-flip``).
        kernel_size: the kernel size when the skeleton passes none (5: a 3x3 grid carries only
            rings 0 and 1 of the basis).
        bias: give every conv a per-field bias (off: group batch norm follows in the U-Net).
        **options: e2cnn's basis options for every layer (``sigma``, ``frequencies_cutoff``,
            ``rings``, ``maximum_offset``; :class:`SteerableConv`).
    """

    lift_conv = SteerableLiftConv
    group_conv = SteerableGroupConv

    def __init__(
        self,
        n: int = DEFAULT_N,
        flip: bool = False,
        kernel_size: int = DEFAULT_KERNEL_SIZE,
        bias: bool = False,
        **options: Any,
    ) -> None:
        _check_n(n)
        self.n, self.flip, self.kernel_size = n, flip, kernel_size
        self.group = Group(n, flip)
        self.options = {"bias": bias, **options}

    def conv_options(self) -> dict[str, Any]:
        """Every conv's ``n``, ``flip``, ``bias`` and basis options."""
        return {"n": self.n, "flip": self.flip, **self.options}

    def __repr__(self) -> str:
        return f"SteerableFamily(n={self.n}, flip={self.flip}, kernel_size={self.kernel_size})"
