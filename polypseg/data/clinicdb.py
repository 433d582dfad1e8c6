"""CVC-ClinicDB: which video sequence each of its 612 frames comes from.

Frames of one sequence show the same polyp from several points of view, so splits must keep a
sequence whole. The table is the one in the shared data README (29 sequences, frames 1-612).
"""

from __future__ import annotations

#: First frame of each sequence 1..29; sequence ``s`` holds frames ``FIRST[s-1] .. FIRST[s]-1``.
_SEQUENCE_FIRST_FRAMES: tuple[int, ...] = (
    1, 26, 51, 68, 79, 104, 127, 152, 178, 200,
    206, 228, 253, 278, 298, 318, 343, 364, 384, 409,
    429, 448, 467, 479, 504, 529, 547, 572, 592,
)  # fmt: skip

#: Number of frames in the official CVC-ClinicDB.
CLINICDB_FRAMES = 612


def frame_number(stem: str) -> int | None:
    """The frame number of a CVC-ClinicDB file stem (``"12"`` -> 12), or None if not one."""
    if not stem.isdigit():
        return None
    frame = int(stem)
    return frame if 1 <= frame <= CLINICDB_FRAMES else None


def sequence_of(frame: int) -> int:
    """The video sequence (1..29) of a CVC-ClinicDB frame number (1..612)."""
    if not 1 <= frame <= CLINICDB_FRAMES:
        raise ValueError(f"CVC-ClinicDB frame numbers run from 1 to {CLINICDB_FRAMES}, not {frame}")
    sequence = 0
    for first in _SEQUENCE_FIRST_FRAMES:
        if frame < first:
            break
        sequence += 1
    return sequence


def sequence_frames(sequence: int) -> range:
    """The frame numbers of one sequence in the official dataset."""
    if not 1 <= sequence <= len(_SEQUENCE_FIRST_FRAMES):
        raise ValueError(f"CVC-ClinicDB has sequences 1 to {len(_SEQUENCE_FIRST_FRAMES)}")
    bounds = (*_SEQUENCE_FIRST_FRAMES, CLINICDB_FRAMES + 1)
    return range(bounds[sequence - 1], bounds[sequence])
