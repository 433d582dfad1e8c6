"""The HTTP layer's pieces on their own: the log limiter, raw error answers, the connection cap."""

from __future__ import annotations

import errno
import logging
import subprocess
import sys

import pytest
from deploy_helpers import REPO

from polypseg.deploy.http import RepeatLimiter, json_error


def record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1, message, args, info)


def test_repeated_warnings_are_counted_not_written(monkeypatch: pytest.MonkeyPatch):
    clock = [100.0]
    monkeypatch.setattr("polypseg.deploy.http.time.monotonic", lambda: clock[0])
    limiter = RepeatLimiter(interval=10.0)
    assert limiter.filter(record("request headers not complete after %g s: 408", 1.0))
    kept = [limiter.filter(record("request headers not complete after %g s: 408", 1.0))
            for _ in range(500)]  # fmt: skip
    assert not any(kept)
    assert limiter.filter(record("another kind"))  # kinds are limited separately
    clock[0] += 10.5
    summary = record("request headers not complete after %g s: 408", 1.0)
    assert limiter.filter(summary)
    assert summary.getMessage().endswith("(500 more like it in 10 s)")
    info = logging.LogRecord("x", logging.INFO, __file__, 1, "GET /healthz", (), None)
    assert all(limiter.filter(info) for _ in range(5))  # below WARNING: never limited


def test_running_out_of_file_descriptors_is_one_line():
    exhausted = OSError(errno.EMFILE, "Too many open files")
    entry = record("socket.accept() out of system resource", exc=exhausted)
    assert RepeatLimiter().filter(entry)
    assert entry.exc_info is None
    assert entry.getMessage() == "socket.accept() out of system resource: Too many open files"


def test_raw_error_answers_are_complete_json_responses():
    answer = json_error(414, "request line too long: at most 16384 bytes")
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 414 Request-URI Too Long") or head.startswith(
        b"HTTP/1.1 414 URI Too Long"
    )
    assert f"content-length: {len(body)}".encode() in head and b"connection: close" in head
    assert body == b'{"error": "request line too long: at most 16384 bytes", "status": 414}'


def test_connection_cap_fits_the_open_file_limit():
    """In a child with an open-file limit of 200 (hard too, so it cannot be raised)."""
    pytest.importorskip("resource")
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))\n"
        "from polypseg.deploy.http import connection_cap\n"
        "print(connection_cap(10_000, reserve=100), connection_cap(8, reserve=100))\n"
        "try:\n"
        "    connection_cap(10, reserve=250)\n"
        "except ValueError as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=True)  # fmt: skip
    first, message = done.stdout.splitlines()
    capped, small = map(int, first.split())
    assert 4 <= capped <= 100 and small == 8
    assert "open-file limit (200)" in message
