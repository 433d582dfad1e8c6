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


# -- round two: stalled uploads, bodies and decoding counted, browser-side headers ------------
@pytest.fixture(scope="module")
def stall_server(exports: dict[str, Path]) -> Iterator[tuple[str, Path]]:
    """``(url, log)`` of a server with the default 60 s body deadline and minimum body rate,
    4 pending places, 20 upload places, 4 per client address."""
    args = ["--threads", "1", "--no-access-log", "--max-pending", "4", "--max-uploads", "20",
            "--max-uploads-per-client", "4"]  # fmt: skip
    with abuse_test.serving(exports["onnx"], args) as (url, _, log):
        yield url, log


def test_stalled_uploads_hold_no_pending_place_and_are_cut_early(stall_server: tuple[str, Path]):
    """20 uploads that stop after two bytes, from 4 addresses (5 each, one more than allowed
    per address): the 16 let in are cut by the minimum body rate (408) within seconds, not the
    60 s deadline; the other 4 get 503 with Retry-After at once; meanwhile a good client is
    answered 200 every time within 5 s (before: the stalled bodies held all 4 pending places
    and every request got 503 for the full 60 s)."""
    url, _ = stall_server
    good = abuse_test.good_png(96)
    report = abuse_test.stall_phase(url, stalled=20, good_image=good, limit=CLIENT_LIMIT, tries=4)
    stalled, served = report["stalled"], report["good"]
    assert served["ok"] == served["of"] == 4, report
    assert served["max_seconds"] <= abuse_test.GOOD_WITHIN_S, report
    assert stalled["statuses"] == {"408": 16, "503": 4}, report
    assert stalled["503_with_retry_after"] == 4, report
    assert stalled["closed"] == 20 and stalled["max_seconds"] < CLIENT_LIMIT, report


def test_error_answers_of_the_http_layer_carry_the_security_headers(
    guarded: tuple[str, int, Path],
):
    url, _, _ = guarded
    host, port = abuse_test._port(url)
    with socket.create_connection((host, port), timeout=CLIENT_LIMIT) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 40_000 + b"\r\n\r\n")
        answer = sock.recv(4096).lower()
    assert answer.startswith(b"http/1.1 431 "), answer[:200]
    for header in (b"x-content-type-options: nosniff", b"x-frame-options: deny",
                   b"frame-ancestors 'none'"):  # fmt: skip
        assert header in answer, (header, answer[:400])


def test_a_foreign_host_name_is_refused_addresses_and_localhost_are_not(
    guarded: tuple[str, int, Path],
):
    """DNS rebinding: a page on another name that resolves to the loopback address."""
    url, _, _ = guarded
    host, port = abuse_test._port(url)

    def status(host_header: str) -> int:
        with socket.create_connection((host, port), timeout=CLIENT_LIMIT) as sock:
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host_header}\r\n\r\n".encode())
            return int(sock.recv(4096).split(b" ", 2)[1])

    assert status("evil.example") == 421
    assert status("evil.example:8000") == 421
    for allowed in (f"127.0.0.1:{port}", "localhost", f"localhost:{port}", "[::1]:80"):
        assert status(allowed) == 200, allowed


def test_decoder_lines_on_stderr_are_rate_limited(tmp_path: Path):
    """libpng and libjpeg print straight to file descriptor 2; 200 such lines (and 3 others)
    become one line of each kind, with the count of those dropped told on the next, and the
    other lines pass unchanged (before: all 203)."""
    import subprocess
    import sys

    code = (
        "import os, time\n"
        "from polypseg.deploy.http import limit_native_stderr\n"
        "limit_native_stderr(interval=0.5)\n"
        "for i in range(100):\n"
        "    os.write(2, b'libpng warning: iCCP: known incorrect sRGB profile\\n')\n"
        "    os.write(2, b'Corrupt JPEG data: 12 extraneous bytes before marker 0xd9\\n')\n"
        "for i in range(3):\n"
        "    os.write(2, b'INFO: something else %d\\n' % i)\n"
        "time.sleep(0.6)\n"
        "os.write(2, b'libpng warning: iCCP: known incorrect sRGB profile\\n')\n"
        "time.sleep(0.3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 0, done.stderr
    assert sum("libpng" in line for line in lines) == 2, lines
    assert sum("Corrupt JPEG" in line for line in lines) == 1, lines
    assert any("(99 more like it)" in line for line in lines), lines
    assert [line for line in lines if line.startswith("INFO")] == [
        f"INFO: something else {i}" for i in range(3)
    ]
