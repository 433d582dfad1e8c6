"""Load the next batches in a background thread while the current one trains.

With ``workers = 0`` the DataLoader reads, resizes and augments each batch in the training
process between optimiser steps (about 3 ms of CPU per image here), so the model waits for it.
:func:`prefetch` moves that work to one thread: decoding (OpenCV), augmentation (albumentations,
numpy) and the step's torch kernels all release the GIL, so the two overlap. The batches and
their order are exactly the loader's (each item's augmentation is seeded by its position, see
:mod:`polypseg.training.sampling`, and the thread touches no global random state).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    """An exception raised in the loading thread, re-raised in the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(batches: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield the items of ``batches`` in order, producing up to ``depth`` ahead in a thread.

    An exception in the producer is raised here, at the item where it happened. Closing the
    generator early (``break``, an exception or Ctrl-C in the consumer) stops the thread.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in batches:
                if not put(item):
                    return
        except BaseException as err:  # handed to the consumer, which re-raises it
            put(_Failure(err))
            return
        put(_DONE)

    thread = threading.Thread(target=produce, name="polypseg-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join(timeout=5.0)
