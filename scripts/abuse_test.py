#!/usr/bin/env python3
"""Hostile-client checks against a local ``polypseg serve`` (loopback only, bounded).

Reproduces the two resource attacks of the hardening issue and reports whether the server
bounds them:

* **memory**: ``-n`` concurrent uploads of the worst case within the default limits, a PNG of
  6324 x 6324 zero pixels (117 KB, 40 megapixels decode to 120 MB); the server's resident size
  is sampled from ``/proc`` while they run: peak, and what stays held 2 s after;
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
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import check_loopback

#: The worst case within the default --max-pixels (40 M): 6324 x 6324 = 39,992,976 pixels.
WORST_SIDE = 6324
PHASES = ("memory", "slow", "flood", "url")


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


def memory_of(pid: int) -> tuple[int, int]:
    """``(resident, peak resident)`` MiB of process ``pid`` (Linux ``/proc``)."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, amount, _unit = line.split()
                values[key] = int(amount) // 1024
    return values["VmRSS:"], values["VmHWM:"]


def http(url: str, data: bytes | None = None, timeout: float = 30.0) -> tuple[int | str, bytes]:
    """``(status, body)`` of one request; the exception's name instead of a status on failure."""
    try:
        request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        try:
            return err.code, err.read()
        except OSError as reset:  # the status line came, then the connection was reset
            return f"{err.code}+{type(reset).__name__}", b""
    except (urllib.error.URLError, OSError) as err:
        return type(getattr(err, "reason", err)).__name__, b""


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
    """``n`` concurrent uploads of ``body``; the server's memory sampled every 50 ms."""
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
        results = list(pool.map(lambda _: http(url + "/v1/segment", body, 600)[0], range(n)))
    seconds = time.monotonic() - start
    done.set()
    report: dict[str, object] = {
        "requests": n,
        "body_bytes": len(body),
        "statuses": {str(s): results.count(s) for s in sorted(set(results), key=str)},
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
    return report


def slow_client(host: str, port: int, kind: str, limit: float) -> dict[str, object]:
    """One slow client (``slow-body``, ``slow-headers``, ``no-body`` or ``idle``: connects and
    sends nothing); how long the server took to answer or close, and what it answered."""
    sock = socket.create_connection((host, port), timeout=limit)
    start = time.monotonic()
    answer = b""
    try:
        if kind == "slow-body":
            sock.sendall(b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        elif kind == "no-body":
            sock.sendall(b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        elif kind == "slow-headers":
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
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
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
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


def verdict(report: dict[str, object], max_peak_mib: int) -> list[str]:
    """The bounds the report breaks (empty: all hold)."""
    broken = []
    memory = report.get("memory")
    if isinstance(memory, dict) and "rss_peak_mib" in memory:
        if memory["rss_peak_mib"] > max_peak_mib:  # type: ignore[operator]
            broken.append(f"memory: peak {memory['rss_peak_mib']} MiB > {max_peak_mib} MiB")
        if set(memory["statuses"]) - {"200"}:  # type: ignore[arg-type]
            broken.append(f"memory: statuses {memory['statuses']}")
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
    parser.add_argument("--max-peak-mib", type=int, default=1536, help="memory bound to check")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if set(phases) - set(PHASES):
        parser.error(f"--phases: choose from {', '.join(PHASES)}")
    if not (1 <= args.uploads <= 64 and 1 <= args.slow_clients <= 64 and 1 <= args.flood <= 2000
            and 1 <= args.side <= 20000 and 1 <= args.slow_limit <= 600
            and 0 <= args.noise_mib <= 64):  # fmt: skip
        parser.error("bounds: -n 1..64, --slow-clients 1..64, --flood 1..2000, --side, "
                     "--slow-limit 1..600, --noise-mib 0..64")  # fmt: skip
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
