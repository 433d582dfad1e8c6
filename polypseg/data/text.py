"""Short text forms of long lists, for messages and reports."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def format_ranges(numbers: Iterable[int]) -> str:
    """Compress integers into ranges: ``[1, 2, 3, 5]`` -> ``"1-3, 5"``."""
    parts: list[str] = []
    run: list[int] = []
    for value in sorted(set(numbers)):
        if run and value != run[-1] + 1:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = []
        run.append(value)
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(parts)


def shorten(items: Sequence[object], limit: int = 10) -> str:
    """``"a, b, c (+7 more)"``: the first ``limit`` items and how many were left out."""
    shown = ", ".join(str(item) for item in items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")
