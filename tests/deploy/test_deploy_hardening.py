"""``polypseg serve`` against hostile clients, as a real uvicorn process on loopback.

Memory is measured in the server's process (``/proc``) under concurrent worst-case uploads;
slow clients are bounded by the test's own deadlines (an order of magnitude above the server's),
so a server that keeps a connection open fails the test instead of hanging it. The helpers are
``scripts/abuse_test.py``'s, so these tests also run that script's code.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import abuse_test

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads process memory from Linux /proc"
)

#: The test's own bound on how long a slow client waits for the server (seconds).
CLIENT_LIMIT = 20.0
#: The server's memory budget, and what the peak may exceed it by (allocator, threads, ...).
BUDGET_MIB, SLACK_MIB = 64, 64


@pytest.fixture(scope="module")
def guarded(exports: dict[str, Path]) -> Iterator[tuple[str, int, Path]]:
    """``(url, pid, log)`` of a server with a small memory budget, short deadlines (1 s for
    headers, 2 s for bodies), few pending requests and a low open-file limit."""
    args = ["--threads", "1", "--no-access-log", "--max-memory", f"{BUDGET_MIB}MiB",
            "--max-pixels", "8000000", "--header-timeout", "1", "--body-timeout", "2",
            "--keep-alive", "1", "--max-pending", "8"]  # fmt: skip
    with abuse_test.serving(exports["onnx"], args, nofile=192) as (url, process, log):
        yield url, process.pid, log


def test_concurrent_worst_case_uploads_stay_within_the_memory_budget(
    guarded: tuple[str, int, Path],
):
    """6 concurrent 6.8-megapixel zero PNGs (34 MB of work each, 20 KB uploads) under a
    64 MiB budget: the server's peak grows by the budget and some slack, not by 6 requests'
    worth, and less than the budget stays held afterwards (before: +675 MiB at peak and
    +447 MiB held, measured with scripts/abuse_test.py -n 6 --side 2600)."""
    url, pid, _ = guarded
    # small images first, so that the threads exist with their one-time allocations
    abuse_test.memory_phase(url, pid, 6, abuse_test.worst_case_png(64))
    report = abuse_test.memory_phase(url, pid, 6, abuse_test.worst_case_png(2600))
    assert report["statuses"] == {"200": 6}, report
    assert report["rss_peak_mib"] - report["rss_before_mib"] <= BUDGET_MIB + SLACK_MIB, report
    assert report["held_after_mib"] < BUDGET_MIB / 2, report


@pytest.mark.parametrize("kind", ["slow-body", "slow-headers", "no-body"])
def test_slow_clients_get_408_and_are_closed(guarded: tuple[str, int, Path], kind: str):
    url, _, _ = guarded
    host, port = abuse_test._port(url)
    result = abuse_test.slow_client(host, port, kind, CLIENT_LIMIT)
    assert result["closed"], result  # within the test's limit, not held open
    assert result["status"] == "408", result


def test_an_idle_connection_is_closed_without_an_answer(guarded: tuple[str, int, Path]):
    url, _, _ = guarded
    host, port = abuse_test._port(url)
    result = abuse_test.slow_client(host, port, "idle", CLIENT_LIMIT)
    assert result["closed"] and result["status"] is None, result


def test_healthz_answers_while_slow_clients_hold_connections(guarded: tuple[str, int, Path]):
    url, _, _ = guarded
    report = abuse_test.slow_phase(url, clients=3, limit=CLIENT_LIMIT)
    for kind, result in report["clients"].items():
        assert result["closed"] == result["of"], (kind, result)
    assert report["healthz"]["ok"] == report["healthz"]["of"] > 0, report


def test_a_long_url_gets_414_and_large_headers_431(guarded: tuple[str, int, Path]):
    url, _, _ = guarded
    report = abuse_test.url_phase(url, 200_000)
    assert report["status"] == 414 and report["json"], report
    host, port = abuse_test._port(url)
    with socket.create_connection((host, port), timeout=CLIENT_LIMIT) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 40_000 + b"\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b'"status": 431' in answer


def test_a_connection_flood_under_a_low_file_limit(guarded: tuple[str, int, Path]):
    """More half-open connections than the file limit allows: the oldest waiting ones are
    closed to make room, /healthz keeps answering, and the log stays a few lines long
    (before: tens of thousands of 'Too many open files' tracebacks)."""
    url, _, log = guarded
    report = abuse_test.flood_phase(url, connections=300, hold=3.0)
    assert report["healthz_during"]["ok"] == report["healthz_during"]["of"] > 0, report
    assert report["healthz_after"] == 200, report
    size = abuse_test.log_size(log)
    assert size is not None and size["tracebacks"] == 0 and size["lines"] < 60, size
