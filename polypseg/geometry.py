"""Rotation of image and mask tensors by arbitrary angles, and the inscribed-disc mask.

Convention: a positive angle rotates the picture **counter-clockwise as displayed** (row 0 at
the top), so ``rotate(x, 90)`` equals ``torch.rot90(x, 1, dims=(-2, -1))`` exactly. Angles that
are multiples of 90 degrees always take the exact ``torch.rot90`` path (a permutation of
pixels, no resampling); other angles resample with ``grid_sample`` about the image centre
(``align_corners=False``), filling what comes from outside the image with zeros. Only square
images are supported (every model input is ``S x S``).

Interpolation: ``"bilinear"`` for images and probability maps, ``"nearest"`` for binary masks.
Pixels whose centre lies within the inscribed disc (:func:`disc_mask`) never see the fill for
any angle, which is why rotation sweeps are scored inside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

#: Angles closer than this (degrees) to a multiple of 90 use the exact rot90 path.
EXACT_TOLERANCE = 1e-9


def quarter_turns(angle: float) -> int | None:
    """``k`` in 0..3 when ``angle`` is ``k * 90`` modulo 360 (within tolerance), else ``None``."""
    turns = angle / 90.0
    nearest = round(turns)
    if abs(turns - nearest) * 90.0 <= EXACT_TOLERANCE:
        return int(nearest) % 4
    return None


def _check_square(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotation needs square images, got {x.shape[-2]}x{x.shape[-1]}")


def _theta(angles: Sequence[float], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Affine matrices ``(A, 2, 3)`` mapping output to input normalised coordinates."""
    rows = []
    for angle in angles:
        rad = math.radians(angle)
        c, s = math.cos(rad), math.sin(rad)
        # Output pixel (x_o, y_o) (x right, y down) samples the input at R(angle) (x_o, y_o).
        rows.append([[c, -s, 0.0], [s, c, 0.0]])
    return torch.tensor(rows, dtype=dtype, device=device)


def rotate_each(
    x: torch.Tensor, angles: Sequence[float], mode: str = "bilinear", exact: bool = True
) -> torch.Tensor:
    """Rotate item ``i`` of the batch ``x`` ``(A, C, S, S)`` by ``angles[i]`` degrees.

    Multiples of 90 degrees use ``torch.rot90`` exactly (unless ``exact`` is false, for tests
    of the resampling path); the others are resampled together in one ``grid_sample`` call with
    ``mode`` (``"bilinear"`` or ``"nearest"``) and zero fill.

    Args:
        x: the batch ``(A, C, S, S)``.
        angles: one angle in degrees per item (counter-clockwise).
        mode: ``bilinear`` or ``nearest`` resampling for the other angles.
        exact: take the ``torch.rot90`` path for multiples of 90 degrees.
    """
    _check_square(x)
    angles = [float(a) for a in angles]
    if len(angles) != x.shape[0]:
        raise ValueError(f"{len(angles)} angles for a batch of {x.shape[0]}")
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', not {mode!r}")
    out = torch.empty_like(x)
    resample = []
    for i, angle in enumerate(angles):
        k = quarter_turns(angle) if exact else None
        if k is None:
            resample.append(i)
        else:
            out[i] = torch.rot90(x[i], k, dims=(-2, -1))
    if resample:
        src = x[resample]
        work_dtype = src.dtype if src.is_floating_point() else torch.float32
        theta = _theta([angles[i] for i in resample], work_dtype, x.device)
        grid = F.affine_grid(theta, list(src.shape), align_corners=False)
        rotated = F.grid_sample(
            src.to(work_dtype), grid, mode=mode, padding_mode="zeros", align_corners=False
        )
        out[resample] = rotated.to(x.dtype)
    return out


def rotate(x: torch.Tensor, angle: float, mode: str = "bilinear") -> torch.Tensor:
    """Rotate every item of ``x`` ``(B, C, S, S)`` by the same ``angle`` (degrees)."""
    return rotate_each(x, [angle] * x.shape[0], mode=mode)


def rotate_many(x: torch.Tensor, angles: Sequence[float], mode: str = "bilinear") -> torch.Tensor:
    """One item ``x`` ``(C, S, S)`` or ``(1, C, S, S)`` rotated by each angle: ``(A, C, S, S)``."""
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.shape[0] != 1:
        raise ValueError(f"rotate_many takes one item, got a batch of {x.shape[0]}")
    return rotate_each(x.expand(len(angles), *x.shape[1:]).contiguous(), angles, mode=mode)


def disc_mask(size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean ``(size, size)`` mask of the pixels whose centre lies in the inscribed disc.

    The radius is ``size/2 - 0.5`` (pixel centres): a bilinear rotation about the centre by any
    angle reads such a pixel only from pixels inside the image, never from the zero fill.
    """
    coords = torch.arange(size, dtype=torch.float64, device=device) + 0.5 - size / 2.0
    radius = size / 2.0 - 0.5
    dist2 = coords[:, None] ** 2 + coords[None, :] ** 2
    return dist2 <= radius**2 + 1e-9


def parse_angles(spec: str) -> list[float]:
    """Angles from ``"START:STOP:STEP"`` (STOP excluded, like ``range``) or a comma list.

    ``"0:360:5"`` gives 0, 5, ..., 355; ``"0,45,90"`` gives those three. Raises ``ValueError``
    with the offending text otherwise.
    """
    text = spec.strip()
    if not text:
        raise ValueError("empty angle specification")
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError(f"angles {spec!r}: expected START:STOP:STEP, e.g. 0:360:5")
        try:
            start, stop, step = (float(p) for p in parts)
        except ValueError:
            raise ValueError(f"angles {spec!r}: START, STOP and STEP must be numbers") from None
        if step <= 0 or stop <= start:
            raise ValueError(f"angles {spec!r}: need STEP > 0 and STOP > START")
        count = math.ceil((stop - start) / step - 1e-9)
        return [round(start + i * step, 9) for i in range(count)]
    try:
        return [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"angles {spec!r}: expected numbers separated by commas") from None
