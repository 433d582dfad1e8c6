#!/usr/bin/env python
"""Layer benchmark: each group conv against one dense ``conv2d`` of the same expanded shape.

For every variant (p4, p4m, se2n12, steerable, steerable-flip) and layer (lifting: image ->
fields, group: fields -> fields), built exactly as the U-Net builds it (``zoo.variant(name)
.family()``), the script times in one process, with interleaved repeats and medians:

* train: forward + backward (``x`` requires grad for group layers, as inside a network);
* eval: forward under ``no_grad`` in eval mode (the expanded weight is cached);

against a plain ``nn.Parameter`` of the expanded weight's shape used by ``F.conv2d`` (no
bias on either side: the U-Net's convs have none). Times are the process's CPU time per call
(``time.process_time``): on a shared machine the wall clock also counts the time the
scheduler gives the cores to other jobs; wall times are in the JSON too. Ratios: of the
medians, and "paired" (median of the ratios of back-to-back calls). The ideal is 1.0; the goals are
<= 1.15 (train) and <= 1.05 (eval). It also times our p4 group conv against the same layer
built with e2cnn (``Rot2dOnR2(N=4)`` regular fields, ``R2Conv``), and profiles the expansion
alone (our gather, SE(2,N)'s sparse vs dense rotation matmul, e2cnn's basis expansion).

    .venv/bin/python scripts/bench_layers.py                # full run (long on a CPU)
    .venv/bin/python scripts/bench_layers.py --quick        # smoke run, seconds
    .venv/bin/python scripts/bench_layers.py --threads 2 --out results/bench_layers.json
    .venv/bin/python scripts/bench_layers.py --markdown results/bench_layers.json  # tables

Writes JSON (``--out``, default ``results/bench_layers.json``) with the machine, torch and
e2cnn versions, threads, date, load average before/after, every time and every ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo
from zoo.base import ExpandedConv2d

VARIANTS = ("p4", "p4m", "se2n12", "steerable", "steerable-flip")
GOALS = {"train": 1.15, "eval": 1.05}


@dataclass
class Case:
    """One layer shape: ``variant`` ``kind`` ("lift" or "group") with ``fields`` out fields."""

    variant: str
    kind: str
    fields: int
    size: int
    batch: int


@dataclass
class Result:
    case: Case
    in_channels: int
    out_channels: int
    kernel_size: int
    params: int
    #: process CPU seconds per call (the headline: a shared machine's other jobs do not count)
    times: dict[str, list[float]] = field(default_factory=dict)
    #: wall-clock seconds of the same calls
    wall: dict[str, list[float]] = field(default_factory=dict)

    def median(self, key: str) -> float:
        return statistics.median(self.times[key])

    def ratio(self, mode: str, ours: str = "ours", ref: str = "dense") -> float:
        """Ratio of the median times (the headline number)."""
        return self.median(f"{ours}_{mode}") / self.median(f"{ref}_{mode}")

    def paired(self, mode: str, ours: str = "ours", ref: str = "dense") -> float:
        """Median of the per-repeat ratios (each pair ran back to back: robust to load drift)."""
        pairs = zip(self.times[f"{ours}_{mode}"], self.times[f"{ref}_{mode}"], strict=True)
        return statistics.median(a / b for a, b in pairs)


class DenseConv(nn.Module):
    """The reference: one ``F.conv2d`` with a plain weight of the given shape, no bias."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.padding = weight.shape[-1] // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, padding=self.padding)


class E2cnnConv(nn.Module):
    """An e2cnn ``R2Conv`` on plain tensors (wrapping costs one object, no copy)."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from e2cnn.nn import GeometricTensor

        return self.conv(GeometricTensor(x, self.conv.in_type)).tensor


def make_layer(case: Case) -> ExpandedConv2d:
    """The layer exactly as ``zoo.create(case.variant)`` builds it (family defaults)."""
    family = zoo.variant(case.variant).family()
    if case.kind == "lift":
        return family.lift(3, case.fields)
    return family.conv(case.fields, case.fields)


def e2cnn_p4(fields: int, kernel_size: int) -> E2cnnConv:
    from e2cnn import gspaces
    from e2cnn import nn as enn

    gs = gspaces.Rot2dOnR2(N=4)
    ftype = enn.FieldType(gs, fields * [gs.regular_repr])
    conv = enn.R2Conv(ftype, ftype, kernel_size, padding=kernel_size // 2, bias=False)
    return E2cnnConv(conv)


# -- timing ---------------------------------------------------------------------------------
def _train_step(module: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> None:
    module(x).backward(grad)
    for p in module.parameters():
        p.grad = None
    x.grad = None


def _eval_step(module: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        module(x)


def _timed2(fn: Callable[[], None]) -> tuple[float, float]:
    """``(process CPU seconds, wall seconds)`` of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def time_side_by_side(
    modules: dict[str, nn.Module],
    x: torch.Tensor,
    repeats: int,
    warmup: int,
    min_seconds: float = 0.0,
    max_repeats: int = 25,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """CPU and wall times, ``{"<name>_train": [s, ...], "<name>_eval": [...]}`` each.

    Train phase then eval phase; in each, repeat ``r`` runs every module once, in an order that
    alternates from one repeat to the next (so a drifting load hits all modules alike). Cheap
    cases repeat beyond ``repeats`` (up to ``max_repeats``) until the last module has run for
    ``min_seconds`` of CPU time in that mode: more samples where a load spike weighs most.
    """
    cpu: dict[str, list[float]] = {}
    wall: dict[str, list[float]] = {}
    with torch.no_grad():
        grad = torch.randn_like(next(iter(modules.values()))(x))
    names = list(modules)
    for mode in ("train", "eval"):
        for m in modules.values():
            m.train(mode == "train")
        r = 0
        while r < warmup + repeats or (
            r < warmup + max_repeats and sum(cpu[f"{names[-1]}_{mode}"]) < min_seconds
        ):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                m = modules[name]
                if mode == "train":
                    t = _timed2(lambda m=m: _train_step(m, x, grad))
                else:
                    t = _timed2(lambda m=m: _eval_step(m, x))
                if r >= warmup:
                    cpu.setdefault(f"{name}_{mode}", []).append(t[0])
                    wall.setdefault(f"{name}_{mode}", []).append(t[1])
            r += 1
    return cpu, wall


def run_case(
    case: Case, repeats: int, warmup: int, with_e2cnn: bool, min_seconds: float = 0.0
) -> Result:
    torch.manual_seed(0)
    layer = make_layer(case)
    weight, _ = layer.expand()
    modules: dict[str, nn.Module] = {"ours": layer, "dense": DenseConv(weight)}
    if with_e2cnn:
        modules["e2cnn"] = e2cnn_p4(case.fields, layer.kernel_size)
    x = torch.randn(case.batch, layer.in_channels, case.size, case.size)
    x.requires_grad_(case.kind == "group")
    result = Result(
        case,
        layer.in_channels,
        layer.out_channels,
        layer.kernel_size,
        sum(p.numel() for p in layer.parameters()),
    )
    result.times, result.wall = time_side_by_side(modules, x, repeats, warmup, min_seconds)
    return result


# -- expansion profile ----------------------------------------------------------------------
def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    """Median process CPU time of ``fn`` in ms (after one warm-up call)."""
    fn()
    return 1e3 * statistics.median(_timed2(fn)[0] for _ in range(repeats))


def _fwd_bwd(expand: Callable[[], torch.Tensor], params: list[torch.Tensor]) -> Callable[[], None]:
    def run() -> None:
        w = expand()
        w.backward(torch.ones_like(w))
        for p in params:
            p.grad = None

    return run


def _se2_parts(
    layer: Any,
) -> tuple[dict[str, Callable[[], torch.Tensor]], dict[str, Callable[[], torch.Tensor]], list]:
    """SE(2,N)'s two expansion steps alone: the rotation matmul (sparse, as used, and dense)
    and the index_select that rolls the group axis."""
    w, kk = layer.weight, layer.kernel_size**2
    flat = w.reshape(-1, kk)
    op = layer.operator
    dense_t = op.to_dense().t().contiguous()
    rotated = (flat @ dense_t).detach().requires_grad_()
    per_out_field = rotated.reshape(layer.out_fields, -1, kk)
    rotation = {
        "rotation: sparse matmul (used)": lambda: w.reshape(-1, kk) @ op.t(),
        "rotation: dense matmul": lambda: w.reshape(-1, kk) @ dense_t,
    }
    gathers = {"group roll: index_select": lambda: per_out_field.index_select(1, layer.index)}
    return rotation, gathers, [rotated]


def profile_expansion(fields: int, repeats: int) -> list[dict[str, Any]]:
    """Time the expansion alone (ms): forward, and forward + backward, for each group conv."""
    rows: list[dict[str, Any]] = []
    for name in VARIANTS:
        torch.manual_seed(0)
        layer = make_layer(Case(name, "group", fields, 0, 0))
        params = list(layer.parameters())
        impls: dict[str, Callable[[], torch.Tensor]] = {
            "ours": lambda layer=layer: layer.expand()[0]
        }
        if name == "se2n12":
            rotation, gathers, extra = _se2_parts(layer)
            impls |= rotation | gathers
            params = [*params, *extra]
        if name.startswith("steerable"):
            r2conv = layer.to_r2conv()
            impls["e2cnn R2Conv.expand_parameters"] = lambda r=r2conv: r.expand_parameters()[0]
            params = [*params, *r2conv.parameters()]
        for impl, fn in impls.items():
            with torch.no_grad():
                fwd = _median_ms(fn, repeats)
            rows.append(
                {
                    "variant": name,
                    "fields": fields,
                    "impl": impl,
                    "forward_ms": fwd,
                    "forward_backward_ms": _median_ms(_fwd_bwd(fn, params), repeats),
                }
            )
    return rows


# -- plans and reporting --------------------------------------------------------------------
def plan(quick: bool) -> tuple[list[Case], int, int, int]:
    """``(cases, repeats, warmup, profile_fields)``."""
    if quick:
        cases = [Case(v, k, 4, 32, 2) for v in VARIANTS for k in ("lift", "group")]
        return cases, 3, 1, 4
    fields_64 = {"p4": (16, 32, 64), "p4m": (16, 32), "se2n12": (16,), "steerable": (16, 32)}
    cases = []
    for v in VARIANTS:
        cases += [Case(v, "lift", f, 64, 8) for f in (16, 32)]
        cases += [Case(v, "group", f, 64, 8) for f in fields_64.get(v, (16,))]
        cases += [Case(v, "lift", 16, 128, 8)]
    cases += [Case(v, "group", 16, 128, 8) for v in ("p4", "p4m", "steerable")]
    return cases, 5, 1, 16


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        info["cpu"] = names[0] if names else None
    except OSError:
        pass
    try:
        import e2cnn

        info["e2cnn"] = getattr(e2cnn, "__version__", "unknown")
    except ImportError:
        info["e2cnn"] = None
    return info


def load() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def row(r: Result) -> str:
    c = r.case
    cells = [
        f"{c.variant:<15}{c.kind:<6}{c.fields:>4} {c.size:>4}x{c.size:<4}"
        f"{r.in_channels:>5}->{r.out_channels:<5}{r.kernel_size:>2}"
    ]
    for mode in ("train", "eval"):
        ratio, paired = r.ratio(mode), r.paired(mode)
        flag = " " if max(ratio, paired) <= GOALS[mode] else "!"
        cells.append(
            f"{1e3 * r.median(f'ours_{mode}'):>9.1f}{1e3 * r.median(f'dense_{mode}'):>9.1f}"
            f"{ratio:>7.3f}{paired:>7.3f}{flag}{len(r.times[f'ours_{mode}']):>3}"
        )
    return " ".join(cells)


HEADER = (
    f"{'variant':<15}{'layer':<6}{'flds':>4} {'size':>9}{'channels':>11}{'k':>3} "
    f"{'train':>9}{'dense':>9}{'ratio':>7}{'paired':>7}{'n':>4} "
    f"{'eval':>9}{'dense':>9}{'ratio':>7}{'paired':>7}{'n':>4}"
)


def markdown(report: dict[str, Any]) -> str:
    """The layer table, the e2cnn comparison and the expansion profile of a saved result."""
    meta = report["meta"]
    m = meta["machine"]
    lines = [
        f"Measured {meta['date']} on {m.get('cpu')} ({m['cpu_count']} cores, shared), torch "
        f"{m['torch']}, e2cnn {m.get('e2cnn')}, {m['threads']} thread(s); load average "
        f"{_fmt_load(meta.get('load_before'))} before, {_fmt_load(meta.get('load_after'))} "
        f"after. Command: `{meta['command']}`.",
        "",
        "CPU ms per call (median); ratio = ours / dense (of the medians; paired = median of the"
        " ratios of back-to-back calls). Goals: train <= 1.15, eval <= 1.05.",
        "",
        "| variant | layer | fields | size | channels | k | train ms | dense | ratio | paired "
        "| eval ms | dense | ratio | paired |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for c in report["cases"]:
        med = c["median_cpu_s"]
        lines.append(
            f"| {c['variant']} | {c['kind']} | {c['fields']} | {c['size']}x{c['size']} "
            f"| {c['in_channels']}->{c['out_channels']} | {c['kernel_size']} "
            f"| {1e3 * med['ours_train']:.1f} | {1e3 * med['dense_train']:.1f} "
            f"| {c['ratio_train']:.3f} | {c['paired_ratio_train']:.3f} "
            f"| {1e3 * med['ours_eval']:.1f} | {1e3 * med['dense_eval']:.1f} "
            f"| {c['ratio_eval']:.3f} | {c['paired_ratio_eval']:.3f} |"
        )
    lines += [
        "",
        "Our p4 group conv against the same layer built with e2cnn (`Rot2dOnR2(N=4)` regular "
        "fields, `R2Conv`), same process:",
        "",
        "| fields | size | ours/e2cnn train | ours/e2cnn eval | e2cnn/dense train "
        "| e2cnn/dense eval |",
        "|--:|--:|--:|--:|--:|--:|",
    ]
    for c in report["p4_vs_e2cnn"]:
        lines.append(
            f"| {c['fields']} | {c['size']}x{c['size']} | {c['ratio_train_vs_e2cnn']:.3f} "
            f"| {c['ratio_eval_vs_e2cnn']:.3f} | {c['ratio_train_e2cnn_vs_dense']:.3f} "
            f"| {c['ratio_eval_e2cnn_vs_dense']:.3f} |"
        )
    fields = report["expansion"][0]["fields"] if report["expansion"] else "?"
    lines += [
        "",
        f"The expansion alone ({fields} -> {fields} fields), CPU ms:",
        "",
        "| variant | implementation | forward | forward + backward |",
        "|---|---|--:|--:|",
    ]
    for e in report["expansion"]:
        lines.append(
            f"| {e['variant']} | {e['impl']} | {e['forward_ms']:.2f} "
            f"| {e['forward_backward_ms']:.2f} |"
        )
    return "\n".join(lines)


def _fmt_load(load: list[float] | None) -> str:
    return "?" if not load else "/".join(f"{v:.1f}" for v in load)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few small shapes, for a smoke run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per case")
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=3.0,
        help="repeat cheap cases (up to 25 times) until each side has run this long per mode",
    )
    parser.add_argument("--out", type=Path, default=Path("results/bench_layers.json"))
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), help="subset to run")
    parser.add_argument(
        "--markdown",
        type=Path,
        metavar="JSON",
        help="print the tables of a saved result as Markdown (for docs/bench_layers.md); no run",
    )
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0

    torch.set_num_threads(args.threads)
    cases, repeats, warmup, profile_fields = plan(args.quick)
    min_seconds = 0.0 if args.quick else args.min_seconds
    repeats = args.repeats or repeats
    cases = [c for c in cases if c.variant in args.variants]
    meta = {
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "quick": args.quick,
        "repeats": repeats,
        "min_seconds": min_seconds,
        "warmup": warmup,
        "goals": GOALS,
        "load_before": load(),
    }
    print(f"# {meta['machine'].get('cpu')} | torch {torch.__version__} | threads {args.threads}")
    print(f"# load average {meta['load_before']} | repeats {repeats} (median)", flush=True)
    print("# CPU ms per call (ours, dense), ratio of medians, median of paired ratios, n calls")
    print(HEADER, flush=True)
    results = []
    for case in cases:
        results.append(run_case(case, repeats, warmup, False, min_seconds))
        print(row(results[-1]), flush=True)

    print("\n# our p4 group conv vs e2cnn R2Conv (Rot2dOnR2(4), regular fields), same shape")
    e2cnn_rows = []
    sizes = [(4, 32, 2)] if args.quick else [(16, 64, 8), (32, 64, 8), (16, 128, 8)]
    for fields, size, batch in sizes:
        r = run_case(Case("p4", "group", fields, size, batch), repeats, warmup, True, min_seconds)
        e2cnn_rows.append(r)
        print(
            f"p4 group {fields:>3} fields {size}x{size}: ours/e2cnn train "
            f"{r.ratio('train', ref='e2cnn'):.3f} eval {r.ratio('eval', ref='e2cnn'):.3f} | "
            f"e2cnn/dense train {r.ratio('train', 'e2cnn'):.3f} "
            f"eval {r.ratio('eval', 'e2cnn'):.3f}",
            flush=True,
        )

    print(f"\n# expansion alone ({profile_fields} -> {profile_fields} fields), CPU ms")
    expansion = profile_expansion(profile_fields, repeats=max(repeats, 5))
    for e in expansion:
        print(
            f"{e['variant']:<15}{e['impl']:<34} forward {e['forward_ms']:>8.2f}"
            f"   forward+backward {e['forward_backward_ms']:>8.2f}",
            flush=True,
        )

    meta["load_after"] = load()
    report = {
        "meta": meta,
        "cases": [_result_json(r) for r in results],
        "p4_vs_e2cnn": [_result_json(r, refs=("dense", "e2cnn")) for r in e2cnn_rows],
        "expansion": expansion,
        "worst": {
            mode: max((r.ratio(mode) for r in results), default=None) for mode in ("train", "eval")
        },
        "worst_paired": {
            mode: max((r.paired(mode) for r in results), default=None) for mode in ("train", "eval")
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"\n# worst ratios: {report['worst']}, paired {report['worst_paired']}")
    print(f"# goals {GOALS}; wrote {args.out}")
    return 0


def _result_json(r: Result, refs: tuple[str, ...] = ("dense",)) -> dict[str, Any]:
    out: dict[str, Any] = {
        **asdict(r.case),
        "in_channels": r.in_channels,
        "out_channels": r.out_channels,
        "kernel_size": r.kernel_size,
        "params": r.params,
        "median_cpu_s": {k: statistics.median(v) for k, v in r.times.items()},
        "median_wall_s": {k: statistics.median(v) for k, v in r.wall.items()},
        "cpu_s": r.times,
        "wall_s": r.wall,
    }
    for ref in refs:
        for mode in ("train", "eval"):
            suffix = "" if ref == "dense" else f"_vs_{ref}"
            out[f"ratio_{mode}{suffix}"] = r.ratio(mode, ref=ref)
            out[f"paired_ratio_{mode}{suffix}"] = r.paired(mode, ref=ref)
            wall_ours = statistics.median(r.wall[f"ours_{mode}"])
            out[f"wall_ratio_{mode}{suffix}"] = wall_ours / statistics.median(
                r.wall[f"{ref}_{mode}"]
            )
    if "e2cnn" in refs:
        for mode in ("train", "eval"):
            out[f"ratio_{mode}_e2cnn_vs_dense"] = r.ratio(mode, "e2cnn")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
