#!/usr/bin/env python3
"""Bounded concurrent load against a local ``polypseg serve`` (127.0.0.1 / localhost only).

Sends ``-n`` requests ``POST /v1/segment`` with one image, at most ``-c`` in flight, and reports
latency percentiles (p50/p95/p99), throughput and errors. Refuses any host but the loopback
interface, so it cannot be pointed at someone else's server by mistake.

    python scripts/load_test.py --url http://127.0.0.1:8000 --image IMG.jpg -n 200 -c 4
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

LOOPBACK_NAMES = {"localhost"}


def check_loopback(url: str) -> str:
    """``url`` without a trailing slash if its host is a loopback address; ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    host = parts.hostname
    if host not in LOOPBACK_NAMES:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"refusing host {host!r}: load tests run against 127.0.0.1 only")
    return url.rstrip("/")


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _one(url: str, body: bytes, content_type: str, timeout: float) -> tuple[float, int | str]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            status: int | str = response.status
    except urllib.error.HTTPError as err:
        err.read()
        status = err.code
    except (urllib.error.URLError, OSError) as err:
        status = type(err).__name__
    return (time.perf_counter() - start) * 1000.0, status


def run_load(
    base_url: str,
    body: bytes,
    *,
    requests: int,
    concurrency: int,
    content_type: str = "application/octet-stream",
    query: str = "",
    warmup: int = 2,
    timeout: float = 60.0,
) -> dict[str, object]:
    """Run the load and return the summary (latencies in ms, throughput in requests/s)."""
    url = check_loopback(base_url) + "/v1/segment" + (f"?{query}" if query else "")
    for _ in range(warmup):
        _one(url, body, content_type, timeout)
    results: list[tuple[float, int | str]] = []
    lock = threading.Lock()

    def task(_: int) -> None:
        outcome = _one(url, body, content_type, timeout)
        with lock:
            results.append(outcome)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(task, range(requests)))
    elapsed = time.perf_counter() - start
    ok = [ms for ms, status in results if status == 200]
    errors: dict[str, int] = {}
    for _, status in results:
        if status != 200:
            errors[str(status)] = errors.get(str(status), 0) + 1
    return {
        "requests": requests,
        "concurrency": concurrency,
        "ok": len(ok),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "throughput_rps": round(len(ok) / elapsed, 2) if elapsed > 0 else 0.0,
        "latency_ms": {
            "p50": round(percentile(ok, 50), 1),
            "p95": round(percentile(ok, 95), 1),
            "p99": round(percentile(ok, 99), 1),
            "mean": round(statistics.fmean(ok), 1) if ok else float("nan"),
            "max": round(max(ok), 1) if ok else float("nan"),
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server (loopback only)")
    parser.add_argument("--image", type=Path, required=True, help="image file to POST")
    parser.add_argument("-n", "--requests", type=int, default=100, help="number of requests")
    parser.add_argument("-c", "--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--query", default="", help="query string, e.g. format=json")
    parser.add_argument("--warmup", type=int, default=2, help="untimed requests first")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 100_000 or not 1 <= args.concurrency <= 256:
        parser.error("-n must lie in 1..100000 and -c in 1..256")
    try:
        base = check_loopback(args.url)
        body = args.image.read_bytes()
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = run_load(
        base,
        body,
        requests=args.requests,
        concurrency=args.concurrency,
        query=args.query,
        warmup=args.warmup,
        timeout=args.timeout,
    )
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        lat = summary["latency_ms"]
        print(
            f"{summary['ok']}/{summary['requests']} ok, concurrency {summary['concurrency']}, "
            f"{summary['throughput_rps']} req/s, latency ms p50 {lat['p50']} p95 {lat['p95']} "
            f"p99 {lat['p99']} max {lat['max']}, errors {summary['errors'] or 'none'}"
        )
    return 0 if not summary["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
