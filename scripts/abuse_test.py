#!/usr/bin/env python3
"""Hostile-client checks against a local ``polypseg serve`` (loopback only, bounded).

Reproduces the two resource attacks of the hardening issue and reports whether the server
bounds them:

* **memory**: ``-n`` concurrent uploads of the worst case within the default limits, a PNG of
  6324 x 6324 zero pixels (117 KB, 40 megapixels decode to 120 MB; ``--noise-mib 9.5`` makes it
  a 10 MB body), each from its own loopback address (127.0.1.x); the server's resident size is
  sampled from ``/proc`` while they run: peak, and what stays held 2 s after. The bound checked
  is the documented one, read from the server's ``/v1/model``: resident size at rest +
  ``max_memory`` + ``max_body_memory``;
* **stall**: ``--stalled`` connections (from 4 loopback addresses) send their headers and two
  bytes of a 10 MB body and stop, while a good client (127.0.0.1) posts a real-sized image
  every second: each good request must be answered 200 within 5 s, every stalled one answered
  (408 for those let in, cut by the minimum body rate; 503 with ``Retry-After`` for the rest)
  and closed well before the 60 s body deadline;
* **slow clients**: connections that send their body a byte at a time, stop in the middle of
  their headers, or send headers and no body; each must be answered (408) or closed by the
  server within its deadlines, while ``/healthz`` keeps answering;
* **flood**: more half-open connections than the server allows, with ``--nofile`` (the open
  file limit it is started with) low; ``/healthz`` must still answer and the log stay short;
* **long URL**: a 200 KB request line must get an HTTP answer (414), not a reset.

With ``--serve MODEL`` the script starts the server itself (so it can read its memory and
log); with ``--url`` and ``--pid`` it checks a running one. Every phase has a bounded number of
requests and connections and a bounded time.

    python scripts/abuse_test.py --serve exports/p4-onnx              # everything, ~2-3 min
    python scripts/abuse_test.py --serve exports/p4-onnx --phases memory -n 16 --json
    python scripts/abuse_test.py --serve exports/p4-onnx --phases stall,memory -n 32 --noise-mib 9.5
    python scripts/abuse_test.py --url http://127.0.0.1:8000 --pid 1234 --phases slow,url
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import check_loopback

#: The worst case within the default --max-pixels (40 M): 6324 x 6324 = 39,992,976 pixels.
WORST_SIDE = 6324
PHASES = ("memory", "stall", "slow", "flood", "url")
#: A good client's request must be answered within this many seconds during the stall phase.
GOOD_WITHIN_S = 5.0


def worst_case_png(side: int = WORST_SIDE, noise_bytes: int = 0) -> bytes:
    """A PNG of ``side x side`` zero RGB pixels (117 KB for 6324: it compresses 1000:1), its
    first rows random so that the file is about ``noise_bytes`` larger (a large body too)."""
    import cv2
    import numpy as np

    pixels = np.zeros((side, side, 3), np.uint8)
    rows = min(side, -(-noise_bytes // (side * 3)))
    pixels[:rows] = np.random.default_rng(0).integers(0, 256, (rows, side, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok
    return encoded.tobytes()


def good_png(side: int = 576) -> bytes:
    """A colonoscopy-sized test image (``side`` square, about 1 MB of noise): a good client's."""
    import cv2
    import numpy as np

    pixels = np.random.default_rng(1).integers(0, 256, (side, side, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".png", pixels)
    assert ok
    return encoded.tobytes()


def memory_of(pid: int) -> tuple[int, int]:
    """``(resident, peak resident)`` MiB of process ``pid`` (Linux ``/proc``)."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, amount, _unit = line.split()
                values[key] = int(amount) // 1024
    return values["VmRSS:"], values["VmHWM:"]


def http(
    url: str, data: bytes | None = None, timeout: float = 30.0, source: str | None = None
) -> tuple[int | str, bytes]:
    """``(status, body)`` of one request (a POST with ``data``), from the loopback address
    ``source`` when given; the exception's name instead of a status on failure."""
    return http_full(url, data, timeout, source)[:2]  # type: ignore[return-value]


def http_full(
    url: str, data: bytes | None = None, timeout: float = 30.0, source: str | None = None
) -> tuple[int | str, bytes, dict[str, str]]:
    """:func:`http` with the answer's headers (lower-case names) as a third item."""
    parts = urlsplit(url)
    connection = HTTPConnection(
        parts.hostname or "127.0.0.1",
        parts.port or 80,
        timeout=timeout,
        source_address=(source, 0) if source else None,
    )
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST" if data else "GET", path or "/", body=data)
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        try:
            return response.status, response.read(), headers
        except OSError as reset:  # the status line came, then the connection was reset
            return f"{response.status}+{type(reset).__name__}", b"", headers
    except (OSError, HTTPException) as err:
        return type(err).__name__, b"", {}
    finally:
        connection.close()


def _port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


# -- the server -------------------------------------------------------------------------------
def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(
    model: str | Path,
    args: Sequence[str] = (),
    *,
    nofile: int | None = None,
    log: Path | None = None,
    ready_timeout: float = 180.0,
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """``polypseg serve MODEL ARGS`` on a free loopback port, until the block ends.

    Yields ``(url, process, log file)``; ``nofile`` sets the server's open-file limit. Without
    ``log``, the log lies in a temporary folder removed afterwards.
    """
    port = free_port()
    scratch = None if log is not None else Path(tempfile.mkdtemp(prefix="polypseg-abuse-"))
    log = log or scratch / "serve.log"  # type: ignore[operator]
    command = [sys.executable, "-m", "polypseg", "serve", str(model), "--host", "127.0.0.1",
               "--port", str(port), *args]  # fmt: skip

    def limit_files() -> None:
        if nofile is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    repo = Path(__file__).resolve().parents[1]
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            command, cwd=repo, stdout=handle, stderr=subprocess.STDOUT, preexec_fn=limit_files
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while http(url + "/readyz", timeout=2)[0] != 200:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready in {ready_timeout:.0f} s")
            time.sleep(0.3)
        yield url, process, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


# -- phases -----------------------------------------------------------------------------------
def memory_phase(url: str, pid: int | None, n: int, body: bytes) -> dict[str, object]:
    """``n`` concurrent uploads of ``body``, each from its own loopback address; the server's
    memory sampled every 50 ms, and the bound it documents (``bound_mib``: at rest plus its
    ``max_memory`` and ``max_body_memory``, from ``/v1/model``)."""
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            with contextlib.suppress(OSError, KeyError):
                samples.append(memory_of(pid)[0])  # type: ignore[arg-type]
            time.sleep(0.05)

    if pid:  # count the peak from here on (Linux: reset the server's peak to its current size)
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = memory_of(pid) if pid else (0, 0)
    sampler = threading.Thread(target=sample, daemon=True)
    if pid:
        sampler.start()
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=n) as pool:
        answers = list(pool.map(lambda i: upload_retrying(url, body, client_address(i)), range(n)))
    results = [status for status, _ in answers]
    seconds = time.monotonic() - start
    done.set()
    report: dict[str, object] = {
        "requests": n,
        "body_bytes": len(body),
        "statuses": {str(s): results.count(s) for s in sorted(set(results), key=str)},
        "retries_after_503": sum(tries for _, tries in answers),
        "seconds": round(seconds, 1),
    }
    if pid:
        sampler.join()
        time.sleep(2.0)
        after, peak = memory_of(pid)
        report.update(
            rss_before_mib=before[0],
            rss_peak_mib=max(peak, *samples) if samples else peak,
            rss_after_2s_mib=after,
            held_after_mib=after - before[0],
        )
        limits = server_limits(url)
        if limits:
            report["bound_mib"] = (
                before[0] + (int(limits["max_memory"]) + int(limits["max_body_memory"])) // 2**20
            )
    return report


def upload_retrying(url: str, body: bytes, source: str, tries: int = 3) -> tuple[int | str, int]:
    """POST ``body`` from ``source`` as a well-behaved client: a 503 is retried after its
    ``Retry-After`` (at most 10 s), ``tries`` times in all; ``(last status, retries)``."""
    for attempt in range(tries):
        status, _, headers = http_full(url + "/v1/segment", body, 600, source=source)
        if status != 503 or attempt == tries - 1:
            return status, attempt
        time.sleep(min(10.0, float(headers.get("retry-after", "1"))))
    raise AssertionError("unreachable")


def client_address(i: int) -> str:
    """The ``i``-th loopback address of the memory phase's clients (127.0.1.1, ...)."""
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


def server_limits(url: str) -> dict[str, object] | None:
    """The ``limits`` of the server's ``/v1/model`` (None when it has none)."""
    status, body = http(url + "/v1/model", timeout=10)
    if status != 200:
        return None
    limits = json.loads(body).get("limits")
    return limits if isinstance(limits, dict) and "max_body_memory" in limits else None


def stalled_upload(host: str, port: int, source: str, limit: float) -> dict[str, object]:
    """Send the headers of a 10 MB upload and two bytes of it from ``source``, then nothing:
    how long the server took to answer or close, its status and whether it said Retry-After."""
    start = time.monotonic()
    answer = b""
    try:
        with socket.create_connection((host, port), timeout=2, source_address=(source, 0)) as sock:
            sock.sendall(
                b"POST /v1/segment HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Length: 10000000\r\n\r\nab"
            )
            sock.settimeout(0.5)
            while time.monotonic() - start < limit:
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                answer += chunk
    except OSError as err:
        answer = answer or f"<{type(err).__name__}>".encode()
    seconds = time.monotonic() - start
    status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else None
    return {"seconds": round(seconds, 1), "status": status, "closed": seconds < limit,
            "retry_after": b"\r\nretry-after: " in answer.lower()}  # fmt: skip


def stall_phase(
    url: str, stalled: int, good_image: bytes, limit: float = 30.0, tries: int = 8
) -> dict[str, object]:
    """``stalled`` uploads stopped after two bytes, from 4 loopback addresses (127.0.0.2-5),
    while a good client posts ``good_image`` every second, ``tries`` times."""
    host, port = _port(url)
    good: list[tuple[int | str, float]] = []

    def good_client() -> None:
        time.sleep(0.5)  # after the stalled uploads have begun
        for _ in range(tries):
            start = time.monotonic()
            status = http(url + "/v1/segment", good_image, timeout=limit)[0]
            good.append((status, time.monotonic() - start))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - start)))

    with ThreadPoolExecutor(max_workers=stalled + 1) as pool:
        watcher = pool.submit(good_client)
        results = list(
            pool.map(
                lambda i: stalled_upload(host, port, f"127.0.0.{2 + i % 4}", limit),
                range(stalled),
            )
        )
        watcher.result()
    statuses = [str(r["status"]) for r in results]
    ok = [seconds for status, seconds in good if status == 200]
    refused = [r for r in results if r["status"] == "503"]
    return {
        "stalled": {
            "of": stalled,
            "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
            "closed": sum(bool(r["closed"]) for r in results),
            "max_seconds": max(float(r["seconds"]) for r in results),  # type: ignore[arg-type]
            "503_with_retry_after": sum(bool(r["retry_after"]) for r in refused),
            "503": len(refused),
        },
        "good": {
            "ok": len(ok),
            "of": len(good),
            "max_seconds": round(max(seconds for _, seconds in good), 2) if good else None,
            "statuses": sorted({str(status) for status, _ in good}),
        },
    }


#: Request line and Host of the slow clients' uploads.
HEAD = b"POST /v1/segment HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def slow_client(host: str, port: int, kind: str, limit: float) -> dict[str, object]:
    """One slow client (``slow-body``, ``slow-headers``, ``no-body`` or ``idle``: connects and
    sends nothing); how long the server took to answer or close, and what it answered."""
    sock = socket.create_connection((host, port), timeout=limit)
    start = time.monotonic()
    answer = b""
    try:
        if kind == "slow-body":
            sock.sendall(HEAD + b"Content-Length: 100000\r\n\r\n")
        elif kind == "no-body":
            sock.sendall(HEAD + b"Content-Length: 5000\r\n\r\n")
        elif kind == "slow-headers":
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sock.settimeout(0.5)
        while time.monotonic() - start < limit:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if kind in ("slow-body", "slow-headers"):  # a byte every 0.5 s
                    with contextlib.suppress(OSError):
                        sock.sendall(b"x")
                continue
            if not chunk:
                break
            answer += chunk
    except OSError as err:
        answer = answer or f"<{type(err).__name__}>".encode()
    finally:
        sock.close()
    status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else None
    return {"kind": kind, "seconds": round(time.monotonic() - start, 1), "status": status,
            "closed": time.monotonic() - start < limit}  # fmt: skip


def _watch_health(url: str, stop: threading.Event, results: list[tuple[int | str, float]]) -> None:
    while not stop.is_set():
        start = time.monotonic()
        status = http(url + "/healthz", timeout=5)[0]
        results.append((status, time.monotonic() - start))
        time.sleep(0.5)


def slow_phase(url: str, clients: int, limit: float) -> dict[str, object]:
    """``clients`` slow clients of each kind at once, ``/healthz`` polled meanwhile."""
    host, port = _port(url)
    health: list[tuple[int | str, float]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_health, args=(url, stop, health), daemon=True)
    watcher.start()
    kinds = ["slow-body", "slow-headers", "no-body"] * clients
    with ThreadPoolExecutor(max_workers=len(kinds)) as pool:
        results = list(pool.map(lambda kind: slow_client(host, port, kind, limit), kinds))
    stop.set()
    watcher.join()
    by_kind: dict[str, dict[str, object]] = {}
    for kind in dict.fromkeys(kinds):
        mine = [r for r in results if r["kind"] == kind]
        by_kind[kind] = {
            "closed": sum(bool(r["closed"]) for r in mine),
            "of": len(mine),
            "max_seconds": max(float(r["seconds"]) for r in mine),  # type: ignore[arg-type]
            "statuses": sorted({str(r["status"]) for r in mine}),
        }
    ok = [latency for status, latency in health if status == 200]
    return {
        "clients": by_kind,
        "healthz": {
            "ok": len(ok),
            "of": len(health),
            "max_ms": round(max(ok) * 1000) if ok else None,
        },
    }


def flood_phase(url: str, connections: int, hold: float) -> dict[str, object]:
    """Open ``connections`` half-sent requests and hold them ``hold`` s, polling ``/healthz``."""
    host, port = _port(url)
    opened: list[socket.socket] = []
    refused = 0
    for _ in range(connections):
        try:
            sock = socket.create_connection((host, port), timeout=2)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            opened.append(sock)
        except OSError:
            refused += 1
    health = []
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline:
        health.append(http(url + "/healthz", timeout=5)[0])
        time.sleep(0.5)
    for sock in opened:
        sock.close()
    time.sleep(0.5)
    after = http(url + "/healthz", timeout=5)[0]
    return {"connections": connections, "refused": refused,
            "healthz_during": {"ok": health.count(200), "of": len(health)},
            "healthz_after": after}  # fmt: skip


def url_phase(url: str, length: int = 200_000) -> dict[str, object]:
    """A request line of ``length`` bytes: the status answered (or the error instead)."""
    status, body = http(url + "/healthz?q=" + "a" * length, timeout=30)
    return {"url_bytes": length, "status": status, "json": body[:1] == b"{"}


def log_size(log: Path | None) -> dict[str, int] | None:
    """Lines, bytes and tracebacks of the server's log (when the script started it)."""
    if log is None or not log.exists():
        return None
    text = log.read_text(errors="replace")
    return {"lines": text.count("\n"), "bytes": len(text), "tracebacks": text.count("Traceback")}


def verdict(report: dict[str, object], max_peak_mib: int | None = None) -> list[str]:
    """The bounds the report breaks (empty: all hold); the memory bound is ``max_peak_mib``
    when given, else the one the server documents (``bound_mib``)."""
    broken = []
    memory = report.get("memory")
    if isinstance(memory, dict) and "rss_peak_mib" in memory:
        bound = max_peak_mib if max_peak_mib is not None else memory.get("bound_mib")
        if bound is not None and memory["rss_peak_mib"] > bound:  # type: ignore[operator]
            broken.append(f"memory: peak {memory['rss_peak_mib']} MiB > {bound} MiB")
        if set(memory["statuses"]) - {"200"}:  # type: ignore[arg-type]
            broken.append(f"memory: statuses {memory['statuses']}")
    stall = report.get("stall")
    if isinstance(stall, dict):
        good, stalled = stall["good"], stall["stalled"]
        if good["ok"] != good["of"] or (good["max_seconds"] or 0) > GOOD_WITHIN_S:
            broken.append(
                f"stall: the good client was not served within {GOOD_WITHIN_S:g} s: {good}"
            )
        if stalled["closed"] != stalled["of"] or stalled["max_seconds"] > 30:
            broken.append(f"stall: stalled uploads held past 30 s: {stalled}")
        if stalled["503_with_retry_after"] != stalled["503"]:
            broken.append("stall: a 503 without Retry-After")
    slow = report.get("slow")
    if isinstance(slow, dict):
        for kind, result in slow["clients"].items():  # type: ignore[union-attr]
            if result["closed"] != result["of"]:
                broken.append(f"slow: {kind} connections left open")
        if slow["healthz"]["ok"] != slow["healthz"]["of"]:  # type: ignore[index]
            broken.append(f"slow: /healthz failed {slow['healthz']}")
    flood = report.get("flood")
    if isinstance(flood, dict) and (
        flood["healthz_during"]["ok"] < flood["healthz_during"]["of"]  # type: ignore[index]
        or flood["healthz_after"] != 200
    ):
        broken.append(f"flood: /healthz did not always answer ({flood['healthz_during']})")
    long_url = report.get("url")
    if isinstance(long_url, dict) and long_url["status"] != 414:
        broken.append(f"url: answered {long_url['status']}, expected 414")
    log = report.get("log")
    if isinstance(log, dict) and (log["tracebacks"] or log["lines"] > 500):
        broken.append(f"log: {log['lines']} lines, {log['tracebacks']} tracebacks")
    return broken


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--serve", metavar="MODEL", help="start polypseg serve MODEL and check it")
    where.add_argument("--url", help="check a running server (loopback only)")
    parser.add_argument("--pid", type=int, help="its process id (--url), to read its memory")
    parser.add_argument("--serve-args", default="", help="extra serve options (with --serve)")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"of {', '.join(PHASES)}")
    parser.add_argument("-n", "--uploads", type=int, default=16, help="concurrent uploads")
    parser.add_argument("--side", type=int, default=WORST_SIDE, help="side of the zero PNG")
    parser.add_argument("--noise-mib", type=float, default=0.0,
                        help="make the PNG about this much larger with random rows")  # fmt: skip
    parser.add_argument("--slow-clients", type=int, default=4, help="slow clients of each kind")
    parser.add_argument("--slow-limit", type=float, default=90.0, help="seconds a slow client "
                        "waits for the server to answer or close")  # fmt: skip
    parser.add_argument("--flood", type=int, default=300, help="half-open connections")
    parser.add_argument("--nofile", type=int, default=256, help="server's open-file limit")
    parser.add_argument("--max-peak-mib", type=int, default=None, help="memory bound to check "
                        "(default: the server's documented one, from /v1/model)")  # fmt: skip
    parser.add_argument("--stalled", type=int, default=32, help="stalled uploads (stall phase)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if set(phases) - set(PHASES):
        parser.error(f"--phases: choose from {', '.join(PHASES)}")
    if not (1 <= args.uploads <= 64 and 1 <= args.stalled <= 64 and 1 <= args.slow_clients <= 64
            and 1 <= args.flood <= 2000 and 1 <= args.side <= 20000 and 1 <= args.slow_limit <= 600
            and 0 <= args.noise_mib <= 64):  # fmt: skip
        parser.error("bounds: -n 1..64, --stalled 1..64, --slow-clients 1..64, --flood 1..2000, "
                     "--side, --slow-limit 1..600, --noise-mib 0..64")  # fmt: skip
    try:
        if args.url:
            check_loopback(args.url)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report: dict[str, object] = {}
    with contextlib.ExitStack() as stack:
        if args.serve:
            nofile = args.nofile if "flood" in phases else None
            url, process, log = stack.enter_context(
                serving(args.serve, args.serve_args.split(), nofile=nofile)
            )
            pid: int | None = process.pid
        else:
            url, pid, log = check_loopback(args.url), args.pid, None
        report["server"] = {"url": url, "serve_args": args.serve_args, "nofile": args.nofile}
        if "memory" in phases:
            body = worst_case_png(args.side, int(args.noise_mib * 2**20))
            report["memory"] = memory_phase(url, pid, args.uploads, body)
        if "stall" in phases:
            report["stall"] = stall_phase(url, args.stalled, good_png())
        if "slow" in phases:
            report["slow"] = slow_phase(url, args.slow_clients, args.slow_limit)
        if "flood" in phases:
            report["flood"] = flood_phase(url, args.flood, hold=5.0)
        if "url" in phases:
            report["url"] = url_phase(url)
        report["log"] = log_size(log)
    broken = verdict(report, args.max_peak_mib)
    report["broken"] = broken
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for phase, result in report.items():
            print(f"{phase}: {json.dumps(result)}")
        print("OK: every bound holds" if not broken else "FAILED: " + "; ".join(broken))
    return 0 if not broken else 1


if __name__ == "__main__":
    sys.exit(main())
