"""The CVC-ClinicDB frame -> sequence table and the short text forms of lists."""

from __future__ import annotations

import pytest

from polypseg.data.clinicdb import frame_number, sequence_frames, sequence_of
from polypseg.data.text import format_ranges, shorten


@pytest.mark.parametrize(
    ("frame", "sequence"),
    [(1, 1), (25, 1), (26, 2), (67, 3), (68, 4), (205, 10), (206, 11), (546, 26), (547, 27),
     (591, 28), (592, 29), (612, 29)],
)  # fmt: skip
def test_sequence_boundaries_follow_the_readme_table(frame: int, sequence: int) -> None:
    assert sequence_of(frame) == sequence


def test_sequences_partition_all_612_frames() -> None:
    frames = [f for s in range(1, 30) for f in sequence_frames(s)]
    assert frames == list(range(1, 613))
    assert all(sequence_of(f) == s for s in range(1, 30) for f in sequence_frames(s))


def test_out_of_range_frames() -> None:
    with pytest.raises(ValueError, match="613"):
        sequence_of(613)
    assert frame_number("0") is None and frame_number("613") is None
    assert frame_number("12a") is None and frame_number("12") == 12


def test_format_ranges_and_shorten() -> None:
    assert format_ranges([5, 1, 2, 3, 9, 10]) == "1-3, 5, 9-10"
    assert format_ranges([]) == ""
    assert shorten(list("abcd"), 2) == "a, b (+2 more)"
    assert shorten(["a"], 2) == "a"
