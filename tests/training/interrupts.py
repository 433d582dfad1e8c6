"""A training callback that stops a run after a given step, as Ctrl-C would (import as
``from interrupts import InterruptAt``)."""

from __future__ import annotations

import os
import signal

from polypseg.training import StepInfo, TrainCallback


class InterruptAt(TrainCallback):
    """Raise KeyboardInterrupt (or send SIGINT) after optimiser step ``step``."""

    def __init__(self, step: int, real_signal: bool = False) -> None:
        self.step, self.real_signal = step, real_signal

    def on_step_end(self, info: StepInfo) -> None:
        if info.step == self.step:
            if self.real_signal:
                os.kill(os.getpid(), signal.SIGINT)
            else:
                raise KeyboardInterrupt
