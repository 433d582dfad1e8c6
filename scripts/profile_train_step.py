#!/usr/bin/env python
"""Where a training step's time goes: torch.profiler over the reference and optimised steps.

Builds one variant the way ``polypseg bench speed --side-by-side`` does (same seeds, same
paths: ``reference`` = NCHW + MONAI's loss, ``optimised`` = channels-last + polypseg's loss;
the allocator is tuned for both here, so the split shows the layout's effect), runs warm-up
steps, then profiles ``--steps`` steps of each path and sums the self CPU time of every op into
groups: convolution (forward, backward), oneDNN/torch copies and reorders, batch norm, filter
expansion (the zoo layers' ``index_select``/``mm`` and their backward), pooling, upsampling,
elementwise, loss and optimiser. Times are CPU time under the profiler (which adds a few
microseconds per op), per step.

    .venv/bin/python scripts/profile_train_step.py --variant steerable --width 3 --depth 3 \\
        --size 96 --out results/speed-train-profile-steerable
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from polypseg.bench.sidebyside import build_runner
from polypseg.training.performance import tune_allocator

#: (group, substrings of op names) in matching order: the first group that matches wins.
GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("convolution backward", ("convolution_backward",)),
    ("convolution forward", ("mkldnn_convolution", "aten::convolution", "_convolution")),
    ("batch norm", ("batch_norm", "FieldBatchNorm")),
    ("filter expansion", ("index_select", "index_add", "aten::mm", "aten::bmm", "sparse",
                          "repeat_interleave", "scatter_add")),
    ("upsampling", ("upsample", "Upsample", "replication_pad")),
    ("pooling", ("max_pool", "amax", "max_pool2d")),
    ("copies and layout", ("aten::copy_", "aten::clone", "aten::contiguous", "aten::cat",
                           "_to_copy", "aten::to")),
    ("optimiser", ("Optimizer", "_foreach", "lerp", "sqrt", "addcdiv")),
    ("activation", ("relu", "threshold", "clamp")),
    ("elementwise and reductions", ("aten::mul", "aten::add", "aten::sub", "aten::div",
                                    "aten::sum", "aten::mean", "addcmul", "sigmoid",
                                    "aten::fill_", "aten::zero_", "aten::eq")),
]


def group_of(name: str) -> str:
    for group, keys in GROUPS:
        if any(key in name for key in keys):
            return group
    return "other"


def profile_path(runner: Any, steps: int) -> tuple[dict[str, float], list[tuple[str, float]]]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            runner.train_step()
    groups: dict[str, float] = defaultdict(float)
    ops = []
    for event in prof.key_averages():
        ms = event.self_cpu_time_total / 1000 / steps
        groups[group_of(event.key)] += ms
        ops.append((event.key, ms))
    ops.sort(key=lambda item: -item[1])
    return dict(groups), ops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="p4")
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--top", type=int, default=12, help="ops listed per path")
    parser.add_argument("--out", type=Path, default=None, help="write OUT.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tune_allocator()
    results = {}
    for path in ("reference", "optimised"):
        runner = build_runner(path, args.variant, args.width, args.depth, args.size,
                              args.batch_size, "cpu", False)
        for _ in range(2):
            runner.train_step()
        results[path] = profile_path(runner, args.steps)
    lines = [
        f"# Training step profile: {args.variant} (width {args.width}, depth {args.depth}, "
        f"{args.size} px, batch {args.batch_size}, {args.threads} threads)",
        "",
        f"`python scripts/profile_train_step.py {' '.join(sys.argv[1:] if argv is None else argv)}`"
        f" — self CPU ms per step under torch.profiler, mean of {args.steps} steps, allocator "
        "tuned on both paths.",
        "",
        "| group | reference ms | optimised ms |",
        "|---|--:|--:|",
    ]
    names = [g for g, _ in GROUPS] + ["other"]
    totals = {p: sum(results[p][0].values()) for p in results}
    for name in names:
        lines.append(f"| {name} | {results['reference'][0].get(name, 0):.1f} "
                     f"| {results['optimised'][0].get(name, 0):.1f} |")
    lines.append(f"| **total** | **{totals['reference']:.1f}** | **{totals['optimised']:.1f}** |")
    for path in ("reference", "optimised"):
        lines += ["", f"Top ops, {path} path:", "", "| op | ms/step |", "|---|--:|"]
        lines += [f"| `{name}` | {ms:.1f} |" for name, ms in results[path][1][: args.top]]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        from polypseg.atomic import atomic_write_text

        atomic_write_text(args.out.with_suffix(".md"), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
