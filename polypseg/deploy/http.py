"""uvicorn for ``polypseg serve``, bounded in time and connections, with a bounded log.

uvicorn's HTTP/1.1 protocol (h11) waits forever for the rest of a request: a client that sends
its headers or body a byte at a time, or never finishes them, holds a connection (a file
descriptor) for as long as it likes, and enough of them exhaust the file limit, after which
asyncio logs a traceback per failed ``accept``. :class:`GuardedH11Protocol` adds:

* a **header deadline**: the request line and headers must arrive within ``header_timeout``
  seconds of the connection (or of the end of the previous response); otherwise 408, or a
  silent close when nothing was sent;
* a **body deadline**: the body must arrive within ``body_timeout`` seconds of the headers;
  otherwise 408 (the application sees a disconnect). Deadlines are totals, not idle times, so
  trickling bytes does not extend them;
* a **minimum body rate**: after ``body_grace`` seconds, a body must have arrived at
  ``min_body_rate`` bytes per second on average, checked every second, or it is cut (408)
  long before the body deadline: a stalled upload does not hold its place for a minute;
* a **connection cap**: past ``max_connections`` open connections, the oldest one that is
  still waiting for a request's headers is closed to make room (a flood of idle or slow
  connections cannot lock out ``/healthz``); when none is, the new connection is closed. The
  cap is lowered to fit the open-file limit with room for two accept bursts (``backlog``), so
  ``accept`` does not run out of file descriptors;
* **answers to oversized heads**: a request line or headers over :data:`MAX_HEAD_BYTES` get a
  414 (URL) or 431 (headers) JSON answer instead of a reset (h11 itself checks the size only of
  heads that arrive in several reads); every such answer half-closes and drains the input
  briefly before closing, so the client reads it;
* **a bounded log**: repeated warnings (invalid requests, timeouts, ``accept`` failures) are
  logged at most once per :data:`LOG_INTERVAL_S` per kind, with a count of those suppressed,
  and without tracebacks for running out of file descriptors; OpenCV's own messages about
  undecodable uploads are silenced, and libpng's / libjpeg's own lines, which they write
  straight to the process's standard error, are rate-limited like the rest
  (:func:`limit_native_stderr`);
* **browser-side headers** on its own answers too (:data:`SECURITY_HEADERS`).

:func:`serve_app` runs an app with these settings (see ``polypseg serve --help``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from polypseg.deploy.headers import SECURITY_HEADERS
from polypseg.deploy.memory import map_large_allocations

log = logging.getLogger("polypseg.serve")

#: Seconds between two log records of the same kind (the others are counted, not written).
LOG_INTERVAL_S = 10.0
#: Seconds a connection that got an error answer keeps draining its input before closing.
LINGER_S = 2.0
#: File descriptors kept free beside the connection cap (model files, uploads spooled to disk,
#: the listening socket, logs).
FD_RESERVE = 48
#: h11's limit on a request line plus headers (bytes); beyond it: 414 or 431.
MAX_HEAD_BYTES = 16 * 1024
_FD_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-connection deadlines (seconds) and the cap on open connections."""

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    keep_alive: float = 5.0
    max_connections: int = 256
    #: Connections accepted in one burst (asyncio accepts up to this many per wake-up, before
    #: the cap can act on them) and the kernel's queue of not yet accepted ones.
    backlog: int = 32
    #: Bytes per second a body must average once ``body_grace`` seconds have passed (0: any).
    min_body_rate: float = 16 * 1024
    body_grace: float = 5.0


class RepeatLimiter(logging.Filter):
    """Let one record of each kind (logger and message template) through per ``interval``
    seconds; the next one let through says how many were suppressed. Tracebacks of running out
    of file descriptors are dropped (the one-line message says it all)."""

    def __init__(self, interval: float = LOG_INTERVAL_S) -> None:
        super().__init__()
        self.interval = interval
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        last, dropped = self._seen.get(key, (float("-inf"), 0))
        if now - last < self.interval:
            self._seen[key] = (last, dropped + 1)
            return False
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, OSError) and exc.errno in _FD_ERRNOS:
            record.exc_info = None
            record.msg, record.args = f"{record.getMessage()}: {exc.strerror}", ()
        if dropped:
            record.msg = f"{record.getMessage()} ({dropped} more like it in {now - last:.0f} s)"
            record.args = ()
        self._seen[key] = (now, 0)
        return True


def install_log_limits(interval: float = LOG_INTERVAL_S) -> RepeatLimiter:
    """Add one :class:`RepeatLimiter` to the loggers that a hostile client can make write."""
    limiter = RepeatLimiter(interval)
    for name in ("asyncio", "uvicorn.error", "polypseg.serve"):
        logging.getLogger(name).addFilter(limiter)
    return limiter


def _loop_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's handler, but ``accept`` failures for lack of file descriptors are one line."""
    exc = context.get("exception")
    if isinstance(exc, OSError) and exc.errno in _FD_ERRNOS:
        log.warning("%s: %s", context.get("message", "socket error"), exc.strerror)
        return
    loop.default_exception_handler(context)


def json_error(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response (``Connection: close``) with the API's JSON error body and
    the :data:`~polypseg.deploy.headers.SECURITY_HEADERS`."""
    body = json.dumps({"error": message, "status": status}).encode()
    phrase = HTTPStatus(status).phrase
    extra = "".join(f"{name}: {value}\r\n" for name, value in SECURITY_HEADERS)
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{extra}connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with deadlines, a connection cap and answers to oversized heads.

    Subclass it with :func:`protocol_class` to set :attr:`limits`.
    """

    limits: ConnectionLimits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: str | None = None
        self._phase_started = 0.0
        self._deadline: asyncio.TimerHandle | None = None
        self._draining = False
        self._body_bytes = 0
        self._rate_check: asyncio.TimerHandle | None = None

    # -- phases and deadlines -------------------------------------------------------------------
    def _current_phase(self) -> str | None:
        if self.transport is None or self.transport.is_closing() or self._draining:
            return None
        state = self.conn.their_state
        if state is h11.IDLE:
            return "headers"
        if state is h11.SEND_BODY:
            return "body"
        return None

    def _update_phase(self) -> None:
        phase = self._current_phase()
        if phase == self._phase:
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._rate_check is not None:
            self._rate_check.cancel()
            self._rate_check = None
        self._phase, self._phase_started = phase, self.loop.time()
        if phase is not None:
            seconds = self.limits.header_timeout if phase == "headers" else self.limits.body_timeout
            self._deadline = self.loop.call_later(seconds, self._expire, phase)
        if phase == "body" and self.limits.min_body_rate > 0:
            self._body_bytes = 0
            self._rate_check = self.loop.call_later(self.limits.body_grace, self._check_body_rate)

    def _check_body_rate(self) -> None:
        """Cut a body that averages less than ``min_body_rate`` after its grace period; look
        again in a second otherwise. Time while uvicorn has paused reading (the application is
        the slow side) does not count against the client."""
        self._rate_check = None
        if self._phase != "body" or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:
            self._phase_started, self._body_bytes = now - self.limits.body_grace, 0
        elif self._body_bytes < self.limits.min_body_rate * (
            now - self._phase_started - self.limits.body_grace
        ):
            rate = self.limits.min_body_rate
            log.warning("request body slower than %g bytes/s: 408", rate)
            self._cut_body(f"request body arriving slower than {rate:g} bytes/s")
            return
        self._rate_check = self.loop.call_later(1.0, self._check_body_rate)

    def _expire(self, phase: str) -> None:
        self._deadline = None
        if self.transport.is_closing() or phase != self._phase:
            return
        if phase == "headers":
            if not self.conn.trailing_data[0]:  # an idle connection: close quietly
                self.transport.close()
                return
            seconds = self.limits.header_timeout
            log.warning("request headers not complete after %g s: 408", seconds)
            self._answer(408, f"request headers not received within {seconds:g} s")
            return
        log.warning("request body not complete after %g s: 408", self.limits.body_timeout)
        self._cut_body(f"request body not received within {self.limits.body_timeout:g} s")

    def _cut_body(self, message: str) -> None:
        """Answer 408 to a request whose body stopped coming (the application's ``receive()``
        returns ``http.disconnect``), or just close when a response has begun."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            cycle.disconnected = True  # the app's receive() returns http.disconnect
            cycle.message_event.set()
            self._answer(408, message)
        else:
            self.transport.close()

    def _answer(self, status: int, message: str) -> None:
        """Write a JSON error, half-close, and drain the input for a moment before closing."""
        self._phase = None
        if self._rate_check is not None:
            self._rate_check.cancel()
            self._rate_check = None
        self.transport.write(json_error(status, message))
        self._draining = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.flow.resume_reading()
        self.loop.call_later(LINGER_S, self.transport.close)

    # -- uvicorn's hooks ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._update_phase()
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def _make_room(self) -> None:
        """Close a connection that is only draining after an error answer, else the oldest one
        still waiting for headers, else this one."""
        waiting = [
            other
            for other in self.connections
            if isinstance(other, GuardedH11Protocol)
            and other is not self
            and not other.transport.is_closing()
            and (
                other._draining
                or (
                    other._phase == "headers"
                    and (other.cycle is None or other.cycle.response_complete)
                )
            )
        ]
        victim = (
            min(waiting, key=lambda other: (not other._draining, other._phase_started))
            if waiting
            else self
        )
        log.warning("connection cap (%d) reached: closing one", self.limits.max_connections)
        victim._phase = None
        if victim._deadline is not None:
            victim._deadline.cancel()
        victim.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._draining:  # answered already: discard what is still arriving
            return
        if self.conn.their_state is h11.IDLE:  # h11 checks only heads that arrive in parts
            head = self.conn.trailing_data[0] + data
            end = head.find(b"\r\n\r\n")
            if (len(head) if end < 0 else end) > MAX_HEAD_BYTES:
                self._refuse_head(head)
                return
        elif self._phase == "body":
            self._body_bytes += len(data)
        super().data_received(data)
        self._update_phase()

    def _refuse_head(self, head: bytes) -> None:
        """414 when the request line alone is too long, else 431."""
        if b"\r\n" not in head[: MAX_HEAD_BYTES + 2]:
            self._answer(414, f"request line too long: at most {MAX_HEAD_BYTES} bytes")
        else:
            self._answer(431, f"request headers too large: at most {MAX_HEAD_BYTES} bytes")

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._update_phase()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._rate_check is not None:
            self._rate_check.cancel()
            self._rate_check = None
        self._phase = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """h11 refused the request: 414/431 when its head is too large, else 400 (JSON)."""
        buffered = self.conn.trailing_data[0]
        if len(buffered) > MAX_HEAD_BYTES:
            self._refuse_head(buffered)
            return
        self._answer(400, "invalid HTTP request")

    def shutdown(self) -> None:
        """Server shutdown: a draining connection (h11 may be in its error state) just closes."""
        if self._draining:
            self.transport.close()
            return
        super().shutdown()

    def timeout_keep_alive_handler(self) -> None:
        if not self._draining:
            super().timeout_keep_alive_handler()


def protocol_class(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """:class:`GuardedH11Protocol` with ``limits``."""
    return type("PolypsegH11Protocol", (GuardedH11Protocol,), {"limits": limits})


def connection_cap(requested: int, reserve: int = FD_RESERVE) -> int:
    """``requested`` connections, lowered to what the file-descriptor limit leaves free once
    ``reserve`` more and those in use now are set aside (call it with the model loaded).

    The soft limit is first raised to the hard one where it is lower. Raises ``ValueError``
    when fewer than 4 connections would fit.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return requested
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return requested
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 16
    free = soft - in_use - reserve
    if free < 4:
        raise ValueError(
            f"the open-file limit ({soft}) leaves no room for connections; raise it (ulimit -n)"
        )
    return min(requested, free)


def _quiet_opencv() -> None:
    """OpenCV logs each image it cannot decode to stderr: a line per hostile upload, which the
    JSON error already answers. (libpng still prints one line for a truncated PNG.)"""
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def bind_socket(host: str, port: int, backlog: int = ConnectionLimits.backlog) -> socket.socket:
    """A TCP socket listening on ``host:port``, to hand to :func:`serve_app`.

    Made before the model is loaded, so that a busy port or a bad address is reported at
    once (connections made meanwhile wait in the backlog). Raises ``ValueError`` with one line
    naming the address and the cause.
    """
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn binds
        infos = socket.getaddrinfo(
            host, port, family=family, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError) as err:
        reason = err.strerror if isinstance(err, socket.gaierror) else str(err)
        message = f"--host {host!r} is not an address or a known host name ({reason})"
        raise ValueError(message) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(backlog)  # Linux lets a second SO_REUSEADDR socket bind a busy port
    except OSError as err:
        sock.close()
        where = f"{host}:{port}"
        if err.errno == errno.EADDRINUSE:
            raise ValueError(f"cannot listen on {where}: the port is already in use") from None
        if err.errno == errno.EACCES:
            raise ValueError(f"cannot listen on {where}: permission denied (ports below 1024 "
                             "need privileges)") from None  # fmt: skip
        raise ValueError(f"cannot listen on {where}: {err.strerror or err}") from None
    sock.set_inheritable(True)
    return sock


#: Lines of the image decoders that they write straight to file descriptor 2 (not Python's
#: logging): libpng's warnings and errors, libjpeg's "Corrupt JPEG data" and the like.
_DECODER_LINES = (b"libpng warning", b"libpng error", b"Corrupt JPEG data",
                  b"Premature end of JPEG", b"Invalid SOS parameters", b"Bogus ",
                  b"Unsupported JPEG process", b"JPEG datastream", b"JFIF", b"libtiff",
                  b"TIFFRead", b"TIFFFetch")  # fmt: skip


class NativeLineLimiter:
    """Copies lines to ``out`` (a file descriptor), letting through one decoder line
    (:data:`_DECODER_LINES`) per ``interval`` seconds per kind; the next one let through says how
    many were dropped. Other lines pass unchanged."""

    def __init__(self, out: int, interval: float = LOG_INTERVAL_S) -> None:
        self.out = out
        self.interval = interval
        self._seen: dict[bytes, tuple[float, int]] = {}

    def line(self, text: bytes) -> None:
        """Write (or count) one line, its newline included."""
        kind = next((k for k in _DECODER_LINES if k in text), None)
        if kind is not None:
            now = time.monotonic()
            last, dropped = self._seen.get(kind, (float("-inf"), 0))
            if now - last < self.interval:
                self._seen[kind] = (last, dropped + 1)
                return
            self._seen[kind] = (now, 0)
            if dropped:
                text = text.rstrip(b"\n") + f" ({dropped} more like it)\n".encode()
        with contextlib.suppress(OSError):
            os.write(self.out, text)


def limit_native_stderr(interval: float = LOG_INTERVAL_S) -> NativeLineLimiter | None:
    """Route file descriptor 2 through a pipe read by a daemon thread that passes every line
    to the real standard error, decoder lines rate-limited (:class:`NativeLineLimiter`).

    libpng and libjpeg write their warnings with ``fprintf(stderr)``, beyond Python's logging:
    a line per hostile upload otherwise. Returns the limiter, or ``None`` where it cannot be set
    up (no ``os.pipe``/``dup2``)."""
    try:
        real = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
    except (OSError, AttributeError):  # pragma: no cover - not POSIX
        return None
    limiter = NativeLineLimiter(real, interval)

    def pump() -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(read_end, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                if pending:
                    limiter.line(pending)
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                limiter.line(line + b"\n")
            if len(pending) > 65536:  # a very long line without newline: pass it on
                limiter.line(pending)
                pending = b""

    thread = threading.Thread(target=pump, name="polypseg-stderr", daemon=True)
    thread.start()

    def drain() -> None:  # at exit: put the real stderr back, let the pump pass what is left
        with contextlib.suppress(OSError):
            os.dup2(real, 2)  # closes the pipe's last write end: the pump reads its end
        thread.join(timeout=2.0)

    atexit.register(drain)
    return limiter


def serve_app(
    app: Any,
    *,
    host: str,
    port: int,
    limits: ConnectionLimits,
    log_level: str = "info",
    access_log: bool = True,
    sock: socket.socket | None = None,
) -> None:
    """Run ``app`` with uvicorn on ``host:port`` (or the socket ``sock`` from
    :func:`bind_socket`) under ``limits`` until stopped (Ctrl-C).

    Args:
        app: the ASGI app (:func:`polypseg.deploy.server.create_app`).
        host: the address to bind (ignored with ``sock``).
        port: the TCP port (ignored with ``sock``).
        limits: header and body deadlines, keep-alive and the connection cap.
        log_level: uvicorn's log level.
        access_log: log one line per request.
        sock: a socket already bound (the port is taken before the model loads); ``None``: bind
            ``host:port``.
    """
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_class(limits),
        loop="asyncio",
        log_level=log_level,
        access_log=access_log,
        timeout_keep_alive=max(1, round(limits.keep_alive)),
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        backlog=limits.backlog,
    )
    ours, uvicorns = logging.getLogger("polypseg.serve"), logging.getLogger("uvicorn")
    if not ours.handlers:  # the server's own lines go where uvicorn's go, in its format
        ours.handlers, ours.propagate = list(uvicorns.handlers), False
        ours.setLevel(uvicorns.level)
    install_log_limits()
    _quiet_opencv()
    limit_native_stderr()
    map_large_allocations()
    server = uvicorn.Server(config)

    async def run() -> None:
        asyncio.get_running_loop().set_exception_handler(_loop_exception_handler)
        await server.serve(sockets=[sock] if sock is not None else None)

    asyncio.run(run())
