"""Bounding the server's memory: a byte budget shared by concurrent requests, and giving freed
memory back to the operating system.

A request reserves :attr:`polypseg.deploy.imageio.ImageHeader.work_bytes` (known from the image
header, before decoding) from a :class:`MemoryBudget` and holds it while it decodes, infers and
encodes; requests that do not fit wait in arrival order. So the memory of all requests in flight
stays within the budget however many arrive at once: a 40-megapixel upload (about 200 MB of
work) and many small ones share it, large ones take turns.

The model's own working memory (activations of one forward pass, which onnxruntime runs for
several requests at once) is measured once at warm-up with :func:`transient_bytes`; it never
overlaps the image work (the decoded image is freed before inference, the full-size maps made
after it), so a request reserves the larger of the two.

glibc keeps freed memory in its heaps (one per thread that allocated):
:func:`map_large_allocations` (set once by the server) gives image-sized buffers back to the OS
when freed, and :func:`trim_heap` (``malloc_trim``) returns what is left after a large request,
so the resident size falls back instead of staying at its peak.

Request bodies are counted apart (:class:`ByteQuota`, taken as their bytes arrive, so a
stalled upload holds nothing) and live in their own anonymous memory maps
(:func:`body_buffer`): the pages written are all they occupy, and closing the map gives them
back at once, instead of leaving 64 KiB chunks and joined copies scattered over the heap.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import ctypes.util
import functools
import mmap
from collections.abc import AsyncIterator, Callable


class BudgetTimeout(Exception):
    """The reservation waited longer than allowed."""


class MemoryBudget:
    """At most ``capacity`` bytes reserved at once; waiters are served first come, first served.

    A request larger than the whole budget is given the whole budget (it then runs alone).
    Use from one event loop (the server's).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"memory budget must be positive, got {capacity}")
        self.capacity = capacity
        self.reserved = 0
        self.peak = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    def _grant(self) -> None:
        while self._waiters:
            size, future = self._waiters[0]
            if future.done():  # cancelled or timed out
                self._waiters.popleft()
                continue
            if self.reserved + size > self.capacity:
                return
            self._waiters.popleft()
            self._take(size)
            future.set_result(None)

    def _take(self, size: int) -> None:
        self.reserved += size
        self.peak = max(self.peak, self.reserved)

    @contextlib.asynccontextmanager
    async def reserve(self, nbytes: int, timeout: float | None = None) -> AsyncIterator[int]:
        """Hold ``nbytes`` (at most the capacity) for the block; :class:`BudgetTimeout` when
        it cannot be had within ``timeout`` seconds."""
        size = max(0, min(int(nbytes), self.capacity))
        if not self._waiters and self.reserved + size <= self.capacity:
            self._take(size)
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((size, future))
            try:
                await asyncio.wait_for(asyncio.shield(future), timeout)
            except (asyncio.TimeoutError, asyncio.CancelledError) as err:
                if future.done() and not future.cancelled():  # granted meanwhile: give back
                    self.reserved -= size
                    self._grant()
                else:
                    future.cancel()
                    self._grant()
                if isinstance(err, asyncio.TimeoutError):
                    raise BudgetTimeout from None
                raise
        try:
            yield size
        finally:
            self.reserved -= size
            self._grant()


class ByteQuota:
    """At most ``capacity`` bytes counted at once; :meth:`take` refuses instead of waiting.

    Use from one event loop (the server's).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"byte quota must be positive, got {capacity}")
        self.capacity = capacity
        self.used = 0
        self.peak = 0

    def take(self, nbytes: int) -> bool:
        """Count ``nbytes`` more if they fit; whether they did."""
        if self.used + nbytes > self.capacity:
            return False
        self.used += nbytes
        self.peak = max(self.peak, self.used)
        return True

    def give(self, nbytes: int) -> None:
        """Stop counting ``nbytes``."""
        self.used = max(0, self.used - nbytes)


def body_buffer(capacity: int) -> mmap.mmap:
    """An anonymous, writable memory map of ``capacity`` bytes (at least 1) for a request body:
    untouched pages take no memory, and ``close()`` returns the written ones to the OS."""
    return mmap.mmap(-1, max(1, capacity))


def exact_copy(buffer: mmap.mmap, length: int) -> mmap.mmap:
    """The first ``length`` bytes of ``buffer`` in a map of exactly that size (``buffer`` is
    closed); ``buffer`` itself when it has that size already."""
    if len(buffer) == length:
        return buffer
    copy = body_buffer(length)
    copy.write(buffer[:length])  # one transient copy: bodies without Content-Length only
    copy.seek(0)
    buffer.close()
    return copy


@functools.lru_cache(maxsize=1)
def _libc_trim() -> object | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


#: ``mallopt`` parameter number of ``M_MMAP_THRESHOLD`` (glibc's malloc.h).
_M_MMAP_THRESHOLD = -3
#: Allocations at least this large get their own memory map, unmapped when freed.
MMAP_THRESHOLD_BYTES = 16 * 1024 * 1024


def map_large_allocations(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Serve allocations of ``threshold`` bytes or more from their own memory maps (glibc).

    glibc raises its threshold to the size of each large block freed (up to 32 MiB), after
    which image-sized buffers come from per-thread heaps that keep them after they are freed;
    a fixed threshold gives them back to the OS when freed. Below it (the model's activations)
    nothing changes. Returns whether it could be set.
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(threshold)))


def trim_heap() -> bool:
    """Return the free memory of the C heaps to the OS (glibc's ``malloc_trim(0)``).

    Returns whether it could be called (False where the C library has no ``malloc_trim``).
    """
    trim = _libc_trim()
    if trim is None:
        return False
    trim(0)  # type: ignore[operator]
    return True


def reset_peak() -> bool:
    """Reset this process's peak resident size to its current one (Linux ``clear_refs``);
    returns whether it could."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def transient_bytes(work: Callable[[], object]) -> int | None:
    """Peak resident bytes that ``work()`` adds while it runs (``None`` where it cannot be
    measured). Run it alone: other threads' allocations count too."""
    if not reset_peak():
        return None
    before, _ = resident_bytes()
    work()
    _, peak = resident_bytes()
    return max(0, peak - before) if peak else None


def resident_bytes() -> tuple[int, int]:
    """``(current, peak)`` resident set size of this process in bytes (Linux), else (0, 0)."""
    values = {}
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, amount, _unit = line.split()
                values[key] = int(amount) * 1024
    return values.get("VmRSS:", 0), values.get("VmHWM:", 0)
