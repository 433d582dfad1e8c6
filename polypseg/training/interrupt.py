"""Graceful Ctrl-C: the first SIGINT (or SIGTERM) asks training to stop after the current step.

The training loop polls :attr:`StopFlag.requested` between optimiser steps and then saves a
resumable state, so a stop never lands inside an update. A second Ctrl-C raises
``KeyboardInterrupt`` at once (the loop still saves the last consistent state when it can).
Handlers are installed only in the main thread and restored on exit.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any


class StopFlag:
    """A context manager that turns SIGINT/SIGTERM into a polled stop request."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if os.environ.get("RANK", "0") != "0":  # under torchrun every rank gets the signal
            return
        print(
            "\nstop requested: saving a resumable state after this step "
            "(press Ctrl-C again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
