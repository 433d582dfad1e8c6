#!/usr/bin/env python
"""Serving throughput of two exports side by side (e.g. float and int8 ONNX), alternating.

Starts ``polypseg serve`` for each export folder on a free loopback port (``--threads``
intra-op threads each), waits until ``/readyz`` answers, then runs ``--rounds`` rounds; in each
round every server in turn gets one load of ``-n`` requests with ``-c`` in flight
(``scripts/load_test.py``'s ``run_load``: one image per request, PNG mask answers), so a change
of load on a shared machine hits both alike, and only one server is under load at any moment.
Reports each server's median throughput and latency over the rounds and the throughput ratio
to the first export (of the medians, and the median over rounds of the per-round ratios).

    python scripts/serve_compare.py exports/p4-onnx exports/p4-int8 \\
        --image ../shared/data/Kvasir-SEG/images/cju0qkwl35piu0993l0dewei2.jpg \\
        -n 40 -c 1 --rounds 5 --threads 2 --out results/speed-serve
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_test import run_load

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s")


def start_server(export: Path, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "polypseg", "serve", str(export), "--host", "127.0.0.1",
               "--port", str(port), "--threads", str(threads), "--no-access-log",
               "--log-level", "warning"]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
    except BaseException:
        proc.terminate()
        proc.wait(timeout=30)
        raise
    return proc, url


def describe_export(folder: Path) -> dict[str, Any]:
    """The export's variant, format, precision, file size, input size and model config (the
    report's keys ``side`` and ``model``, as published)."""
    from polypseg.checkpoint import model_config_of

    meta = json.loads((folder / "export.json").read_text())
    quantization = meta.get("quantization") or {}
    return {
        "folder": folder.name,
        "variant": meta.get("variant"),
        "format": meta.get("export_format"),
        "quantization": quantization.get("scheme", "float32"),
        "quality": quantization.get("quality"),
        "size_bytes": (folder / meta["file"]).stat().st_size,
        "side": meta.get("input", {}).get("size"),
        "model": model_config_of(meta),
    }


def markdown(doc: dict[str, Any]) -> str:
    s = doc["settings"]
    lines = [
        "# Serving throughput side by side",
        "",
        f"- Date {doc['date']}; {doc['cpu']}, {doc['cores']} cores; load average before "
        f"{doc['load_before']}, after {doc['load_after']}.",
        f"- Each server `--threads {s['threads']}`; {s['rounds']} rounds, each server in turn "
        f"{s['requests']} requests at concurrency {s['concurrency']} "
        f"({s['image']}, PNG mask answers).",
        f"- Command: `{doc['command']}`",
        "",
        "| export | quantization | file | val Dice (float / int8) | throughput median "
        "| ratio (paired) | p50 | p95 |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for row in doc["servers"]:
        quality = row["export"]["quality"]
        dice = (f"{quality['float_dice']:.4f} / {quality['int8_dice']:.4f}" if quality else "")
        lines.append(
            f"| {row['export']['folder']} | {row['export']['quantization']} "
            f"| {row['export']['size_bytes'] / 2**20:.1f} MiB | {dice} "
            f"| {row['throughput_rps']:.2f} req/s | {row['ratio']:.2f}x "
            f"({row['paired_ratio']:.2f}x) | {row['p50_ms']:.0f} ms | {row['p95_ms']:.0f} ms |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", type=Path, nargs="+", help="export folders; first = base")
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("-n", "--requests", type=int, default=40)
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.md")
    args = parser.parse_args(argv)
    body = args.image.read_bytes()
    load_before = [round(v, 2) for v in os.getloadavg()]
    servers: list[tuple[subprocess.Popen, str]] = []
    rounds: list[list[dict[str, Any]]] = [[] for _ in args.exports]
    try:
        for export in args.exports:
            servers.append(start_server(export, args.threads))
        for r in range(args.rounds):
            for i, (_, url) in enumerate(servers):
                summary = run_load(url, body, requests=args.requests,
                                   concurrency=args.concurrency)
                if summary["errors"]:
                    raise RuntimeError(f"{args.exports[i]}: errors {summary['errors']}")
                rounds[i].append(summary)
                print(f"round {r + 1} {args.exports[i].name}: {summary['throughput_rps']} req/s",
                      file=sys.stderr)
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=30)
    base = [s["throughput_rps"] for s in rounds[0]]
    rows = []
    for export, summaries in zip(args.exports, rounds, strict=True):
        rps = [s["throughput_rps"] for s in summaries]
        rows.append({
            "export": describe_export(export),
            "rounds": summaries,
            "throughput_rps": statistics.median(rps),
            "ratio": statistics.median(rps) / statistics.median(base),
            "paired_ratio": statistics.median(a / b for a, b in zip(rps, base, strict=True)),
            "p50_ms": statistics.median(s["latency_ms"]["p50"] for s in summaries),
            "p95_ms": statistics.median(s["latency_ms"]["p95"] for s in summaries),
        })
    from polypseg.bench.hardware import cpu_model

    doc = {
        "kind": "polypseg-serve-compare/1",
        "date": time.strftime("%Y-%m-%d"),
        "command": "python scripts/serve_compare.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_before": load_before,
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "settings": {"requests": args.requests, "concurrency": args.concurrency,
                     "rounds": args.rounds, "threads": args.threads, "image": args.image.name},
        "servers": rows,
    }
    text = markdown(doc)
    print(text)
    if args.out is not None:
        from polypseg.atomic import atomic_write_report

        atomic_write_report(args.out, doc, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
