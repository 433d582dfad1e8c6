"""Rich progress bars for long loops, shown only on a terminal (never in tests or logs)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def want_progress(setting: bool | None, is_main: bool = True) -> bool:
    """Whether to draw bars: ``setting`` when given, else only if stdout is a terminal."""
    if not is_main:
        return False
    if setting is not None:
        return setting
    return sys.stdout.isatty()


class Bars:
    """A set of named rich progress tasks; every method is a no-op when disabled."""

    def __init__(self, progress: Any | None) -> None:
        self._progress = progress
        self._tasks: dict[str, Any] = {}

    def start(self, name: str, description: str, total: int | None, completed: int = 0) -> None:
        """Begin (or restart) the bar ``name``.

        Args:
            name: the bar's key in later calls.
            description: the text shown before the bar.
            total: steps to completion; ``None``: unknown.
            completed: steps already done (a resumed epoch).
        """
        if self._progress is None:
            return
        if name in self._tasks:
            self._progress.remove_task(self._tasks[name])
        self._tasks[name] = self._progress.add_task(description, total=total, completed=completed)

    def advance(self, name: str, amount: int = 1, **fields: Any) -> None:
        """Move the bar ``name`` on; ``fields`` may update its ``description``."""
        if self._progress is not None and name in self._tasks:
            self._progress.update(self._tasks[name], advance=amount, **fields)

    def finish(self, name: str) -> None:
        """Remove the bar ``name``."""
        if self._progress is not None and name in self._tasks:
            self._progress.remove_task(self._tasks.pop(name))

    def print(self, line: str) -> None:
        """Print a line above the bars (plain ``print`` without them)."""
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, flush=True)


@contextmanager
def bars(enabled: bool) -> Iterator[Bars]:
    """A :class:`Bars` drawing rich bars when ``enabled``, else plain text only."""
    if not enabled:
        yield Bars(None)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=True,
    )
    with progress:
        yield Bars(progress)
