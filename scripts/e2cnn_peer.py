#!/usr/bin/env python
"""Whole-model peer: the steerable U-Net built from e2cnn's own modules against zoo's.

The source talk's steerable U-Net was written with e2cnn's modules. This script builds that same
network with them: ``R2Conv`` (kernel 5, no bias) + ``InnerBatchNorm`` + ``ReLU`` blocks on
``Rot2dOnR2(8)`` regular fields (lifting from 3 trivial fields), ``PointwiseMaxPool`` (2x2)
down, ``R2Upsampling`` (bilinear x2) up, skips joined with ``tensor_directsum`` (skip first, as
zoo does), ``GroupPooling`` and a plain 1x1 ``nn.Conv2d`` head (e2cnn 0.2.3 on torch 2.13 cannot
build a 1x1 ``R2Conv`` to or from trivial fields). Its fields, depth and kernel are those of
``zoo.create("steerable", width=W, depth=D)``; the script checks that both have the same
parameters and, with zoo's weights copied into the peer, the same logits, then compares them:

* training step (forward, Dice + CE loss, backward, AdamW) and inference (eval mode,
  ``inference_mode``; e2cnn then uses its cached filters): both models in this one process,
  timed with interleaved repeats (e2cnn, zoo NCHW, zoo channels-last, e2cnn, ...); the ratios
  are e2cnn time / zoo time (1.5 = zoo 1.5x faster);
* construction time: building the model in a fresh process, after the imports (e2cnn samples
  its bases per layer, zoo once per kind of layer), and again in the same process;
* peak memory: each model alone in a fresh subprocess, the rise of the peak resident set
  during one inference and one training step (:mod:`polypseg.bench.memprobe`).

glibc's allocator is tuned for both in the timing (``polypseg train`` does it), so the
comparison is of the models, not of malloc; the memory probes keep its defaults.

    .venv/bin/python scripts/e2cnn_peer.py --width 3 --depth 3 --size 96 --batch-size 8
    .venv/bin/python scripts/e2cnn_peer.py --quick          # seconds: a smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo.steerable  # e2cnn imported the way zoo does (numpy-2 shim)
from polypseg.training.losses import DiceCELoss
from polypseg.training.performance import tune_allocator

N_ROTATIONS, KERNEL = 8, 5


class E2cnnUNet(nn.Module):
    """The steerable U-Net from e2cnn modules: ``(B, 3, H, W) -> (B, 1, H, W)`` logits."""

    def __init__(self, width: int, depth: int, in_channels: int = 3) -> None:
        super().__init__()
        from e2cnn import gspaces
        from e2cnn import nn as enn

        self.enn = enn
        gs = gspaces.Rot2dOnR2(N_ROTATIONS)
        self.in_type = enn.FieldType(gs, in_channels * [gs.trivial_repr])

        def regular(fields: int) -> Any:
            return enn.FieldType(gs, fields * [gs.regular_repr])

        def block(in_type: Any, out_type: Any) -> Any:
            return enn.SequentialModule(
                enn.R2Conv(in_type, out_type, KERNEL, padding=KERNEL // 2, bias=False),
                enn.InnerBatchNorm(out_type),
                enn.ReLU(out_type, inplace=True),
            )

        widths = [width * 2**i for i in range(depth + 1)]
        types = [regular(w) for w in widths]
        self.encoder = nn.ModuleList(
            [enn.SequentialModule(block(self.in_type, types[0]), block(types[0], types[0]))]
        )
        for lo, hi in pairwise(types):
            self.encoder.append(enn.SequentialModule(
                enn.PointwiseMaxPool(lo, 2), block(lo, hi), block(hi, hi)))
        self.upsample = nn.ModuleList(
            enn.R2Upsampling(t, scale_factor=2, mode="bilinear", align_corners=False)
            for t in reversed(types[1:])
        )
        self.decoder = nn.ModuleList(
            enn.SequentialModule(block(lo + hi, lo), block(lo, lo))
            for lo, hi in reversed(list(pairwise(types)))
        )
        self.pool = enn.GroupPooling(types[0])
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.enn.GeometricTensor(x, self.in_type)
        skips = []
        for stage in self.encoder:
            g = stage(g)
            skips.append(g)
        g = skips.pop()
        for up, stage in zip(self.upsample, self.decoder, strict=True):
            g = stage(self.enn.tensor_directsum([skips.pop(), up(g)]))
        return self.head(self.pool(g).tensor)


def build(kind: str, width: int, depth: int) -> nn.Module:
    """``e2cnn`` (the peer) or ``zoo`` (zoo's steerable U-Net) at ``width``/``depth``; zoo's
    without the head norm, which the peer does not have (the comparison is of the layers)."""
    if kind == "e2cnn":
        return E2cnnUNet(width, depth)
    return zoo.create("steerable", width=width, depth=depth, head_norm=False)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def same_function(width: int, depth: int, size: int) -> float:
    """Copy a zoo model's parameters into the peer (same order and shapes: R2Conv weights and
    zoo's, InnerBatchNorm's and zoo's per-field affine, the head) and return the max relative
    difference of their train-mode logits: the two are one network to float rounding."""
    torch.manual_seed(0)
    peer, ours = build("e2cnn", width, depth), build("zoo", width, depth)
    pairs = list(zip(peer.parameters(), ours.parameters(), strict=True))
    if any(a.shape != b.shape for a, b in pairs):
        raise RuntimeError("the peer's parameters do not line up with zoo's")
    with torch.no_grad():
        for a, b in pairs:
            a.copy_(b)
        x = torch.randn(2, 3, size, size)
        theirs, mine = peer.train()(x), ours.train()(x)
    return float((theirs - mine).abs().max() / mine.abs().max())


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = DiceCELoss()

    def step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    return step


def infer_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        model.eval()
        with torch.inference_mode():
            model(x)

    return step


def interleaved(
    calls: dict[str, Callable[[], None]], repeats: int, warmup: int
) -> dict[str, dict[str, list[float]]]:
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            cpu, wall = time.process_time(), time.perf_counter()
            call()
            times[name]["wall"].append(time.perf_counter() - wall)
            times[name]["cpu"].append(time.process_time() - cpu)
    return times


def speedups(times: dict[str, dict[str, list[float]]], base: str) -> dict[str, dict[str, float]]:
    """``{name: {clock: base median / name median}}`` and the median paired ratio."""
    out: dict[str, dict[str, float]] = {}
    for name in times:
        if name == base:
            continue
        row = {}
        for clock in ("wall", "cpu"):
            ref, ours = times[base][clock], times[name][clock]
            row[clock] = statistics.median(ref) / statistics.median(ours)
            row[f"{clock}_paired"] = statistics.median(
                r / o for r, o in zip(ref, ours, strict=True))
        out[name] = row
    return out


def probe(kind: str, width: int, depth: int, size: int, batch: int, threads: int) -> dict:
    """In a fresh process: construction time, the peak RSS rise of an inference and a
    training step, then the time of a second construction. glibc's allocator keeps its
    defaults here, since a tuned one keeps freed blocks and would hide part of a peak."""
    from polypseg.bench.memprobe import _maxrss_mib, _status_mib, peak_rise

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    model = build(kind, width, depth)
    first = time.perf_counter() - start
    x = torch.randn(batch, 3, size, size)
    y = (torch.rand(batch, 1, size, size) > 0.5).float()
    baseline = _status_mib("VmRSS") or _maxrss_mib()
    infer, method = peak_rise(infer_step(model, x), baseline)
    train, _ = peak_rise(train_step(model, x, y), baseline)
    start = time.perf_counter()
    build(kind, width, depth)
    second = time.perf_counter() - start
    return {"build_fresh_s": first, "build_again_s": second, "infer_peak_mib": infer,
            "train_peak_mib": train, "memory_method": method}


def run_probe(kind: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--probe", kind, "--width", str(args.width),
               "--depth", str(args.depth), "--size", str(args.size),
               "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(doc: dict) -> str:
    s = doc["settings"]
    lines = [
        "# Steerable U-Net: zoo against the same network from e2cnn modules",
        "",
        f"- Date {doc['date']}; {doc['hardware']['cpu']}, torch {doc['hardware']['torch']}, "
        f"threads {s['threads']}; load average at the end {doc['load_average']}",
        f"- C8 regular fields, width {s['width']}, depth {s['depth']}, kernel {KERNEL}; "
        f"batch {s['batch_size']} x 3 x {s['size']} x {s['size']}; {s['repeats']} interleaved "
        f"repeats after {s['warmup']} warm-up calls. Parameters: e2cnn "
        f"{doc['params']['e2cnn']:,}, zoo {doc['params']['zoo']:,}; with zoo's weights copied "
        f"in, the peer's logits differ by {doc['same_function_rel_diff']:.1e} (relative).",
        f"- Command: `{doc['command']}`",
        "",
        "Speed-up = e2cnn time / zoo time (>1: zoo faster), of the medians (paired: median of "
        "back-to-back ratios), wall clock and process CPU time.",
        "",
        "| zoo path | train: wall (paired) | train: CPU (paired) | infer: wall (paired) "
        "| infer: CPU (paired) |",
        "|---|--:|--:|--:|--:|",
    ]
    for name in ("zoo-nchw", "zoo-channels-last"):
        t, i = doc["train_speedup"][name], doc["infer_speedup"][name]
        lines.append(
            f"| {name} | {t['wall']:.2f}x ({t['wall_paired']:.2f}x) | {t['cpu']:.2f}x "
            f"({t['cpu_paired']:.2f}x) | {i['wall']:.2f}x ({i['wall_paired']:.2f}x) "
            f"| {i['cpu']:.2f}x ({i['cpu_paired']:.2f}x) |")
    lines += ["", "| model | build, fresh process (s) | build again (s) | train peak MiB "
              "| infer peak MiB |", "|---|--:|--:|--:|--:|"]
    for kind in ("e2cnn", "zoo"):
        p = doc["probe"][kind]
        lines.append(f"| {kind} | {p['build_fresh_s']:.2f} | {p['build_again_s']:.2f} "
                     f"| {p['train_peak_mib']:.0f} | {p['infer_peak_mib']:.0f} |")
    lines += ["", f"Memory: {doc['probe']['zoo']['memory_method']}, each model alone in a "
              "fresh process."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=3, help="fields of the first stage")
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.md")
    parser.add_argument("--probe", choices=("e2cnn", "zoo"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.width, args.depth, args.size, args.batch_size = 1, 1, 16, 2
        args.repeats, args.warmup = 2, 0
    if args.probe:
        print(json.dumps(probe(args.probe, args.width, args.depth, args.size, args.batch_size,
                               args.threads)))
        return 0
    torch.set_num_threads(args.threads)
    tune_allocator()
    torch.manual_seed(0)
    peer = build("e2cnn", args.width, args.depth)
    ours = build("zoo", args.width, args.depth)
    params = {"e2cnn": n_params(peer), "zoo": n_params(ours)}
    if params["e2cnn"] != params["zoo"]:
        print(f"error: the two networks differ in parameters: {params}", file=sys.stderr)
        return 1
    parity = same_function(args.width, args.depth, args.size)
    if parity > 1e-4:
        print(f"error: the two networks compute different functions ({parity:.2e})",
              file=sys.stderr)
        return 1
    x = torch.randn(args.batch_size, 3, args.size, args.size)
    y = (torch.rand(args.batch_size, 1, args.size, args.size) > 0.5).float()
    x_cl = x.contiguous(memory_format=torch.channels_last)
    ours_cl = build("zoo", args.width, args.depth)
    ours_cl.load_state_dict(ours.state_dict())
    print(f"params {params['zoo']:,}; timing training steps", file=sys.stderr)
    train = interleaved({"e2cnn": train_step(peer, x, y), "zoo-nchw": train_step(ours, x, y),
                         "zoo-channels-last": train_step(ours_cl, x_cl, y)},
                        args.repeats, args.warmup)
    print("timing inference", file=sys.stderr)
    infer = interleaved({"e2cnn": infer_step(peer, x), "zoo-nchw": infer_step(ours, x),
                         "zoo-channels-last": infer_step(ours_cl, x_cl)},
                        args.repeats, args.warmup)
    print("construction and memory (fresh processes)", file=sys.stderr)
    doc = {
        "kind": "polypseg-e2cnn-peer/1",
        "date": time.strftime("%Y-%m-%d"),
        "command": "python scripts/e2cnn_peer.py " + " ".join(sys.argv[1:] if argv is None
                                                              else argv),
        "hardware": {"cpu": _cpu(), "torch": torch.__version__, "cores": _cores()},
        "load_average": [round(v, 2) for v in _loadavg()],
        "settings": {k: getattr(args, k) for k in
                     ("width", "depth", "size", "batch_size", "repeats", "warmup", "threads")},
        "params": params,
        "same_function_rel_diff": parity,
        "train_seconds": train,
        "infer_seconds": infer,
        "train_speedup": speedups(train, "e2cnn"),
        "infer_speedup": speedups(infer, "e2cnn"),
        "probe": {kind: run_probe(kind, args) for kind in ("e2cnn", "zoo")},
    }
    text = markdown(doc)
    print(text)
    if args.out is not None:
        from polypseg.atomic import atomic_write_report

        atomic_write_report(args.out, doc, text)
    return 0


def _cpu() -> str:
    from polypseg.bench.hardware import cpu_model

    return cpu_model()


def _cores() -> int | None:
    import os

    return os.cpu_count()


def _loadavg() -> tuple[float, float, float]:
    import os

    return os.getloadavg()


if __name__ == "__main__":
    sys.exit(main())
