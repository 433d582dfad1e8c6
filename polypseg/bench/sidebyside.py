"""``polypseg bench speed --side-by-side``: each variant's training step (and inference) on the
reference path and on the optimised path, in one process, interleaved, as ratios.

* **reference** ("today"): NCHW batches, MONAI's ``DiceCELoss(sigmoid=True)``, the model as zoo
  builds it, eager: what a training step was before the speed work.
* **optimised**: channels-last batches (zoo's per-field batch norm and upsampling adjoint on
  NHWC maps, :mod:`zoo.norm`, :mod:`zoo.pooling`), polypseg's torch-only Dice + CE loss, and
  with ``compile=True`` ``torch.compile`` of the model.

Both paths start from the same weights and see the same batch; a training step is AdamW (the
training loop's settings) after forward, loss and backward. Repeats alternate the two paths
(reference, optimised, reference, ...) so a change of load on a shared machine hits both; each
call is timed by the wall clock and by the process's CPU time (which on one thread does not
count the time the scheduler gives the core to other jobs). The result per variant: the ratio of
the median times (reference / optimised: 1.3 means 30 % more steps per second) and the median
of the ratios of back-to-back pairs, plus how far the two paths' logits and gradients differ
after one step (float32 rounding: the two paths run other kernels).
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

KIND = "polypseg-speed-side-by-side/1"
#: AdamW settings of the training loop's defaults.
LR, WEIGHT_DECAY = 1e-3, 1e-4


def _loss(path: str) -> nn.Module:
    if path == "reference":
        from monai.losses import DiceCELoss as MonaiDiceCELoss

        return MonaiDiceCELoss(sigmoid=True)
    from polypseg.training.losses import DiceCELoss

    return DiceCELoss()


def _layout(path: str) -> torch.memory_format:
    return torch.contiguous_format if path == "reference" else torch.channels_last


class PathRunner:
    """One path of one variant: its own model copy, optimiser, loss and input layout."""

    def __init__(
        self, path: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, compile_model: bool
    ) -> None:
        self.path = path
        self.model = copy.deepcopy(model)
        self.net = torch.compile(self.model) if compile_model and path == "optimised" else (
            self.model
        )
        self.x = x.contiguous(memory_format=_layout(path))
        self.y = y
        self.loss_fn = _loss(path)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY
        )

    def train_step(self) -> None:
        """zero_grad, forward, loss, backward, AdamW step (train mode)."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        self.loss_fn(self.net(self.x), self.y).backward()
        self.optimizer.step()

    def infer_step(self) -> None:
        """One forward pass in eval mode under ``inference_mode``."""
        self.model.eval()
        with torch.inference_mode():
            self.net(self.x)

    def gradients(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and parameter gradients of one forward/backward from the current weights."""
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        state = copy.deepcopy(self.model.state_dict())  # batch norm buffers move: restore
        logits = self.net(self.x)
        self.loss_fn(logits, self.y).backward()
        grads = [p.grad.detach().clone() for p in self.model.parameters()]
        self.model.zero_grad(set_to_none=True)
        self.model.load_state_dict(state)
        return logits.detach(), grads


def rel_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max|actual - expected| / max|expected|``."""
    scale = float(expected.abs().max())
    return float((actual - expected).abs().max()) / scale if scale > 0 else 0.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_pairs(
    calls: dict[str, Callable[[], None]], device: torch.device, repeats: int, warmup: int
) -> dict[str, dict[str, list[float]]]:
    """``{path: {"wall": [...], "cpu": [...]}}``: seconds per call, paths alternating."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            _sync(device)
            cpu, wall = time.process_time(), time.perf_counter()
            call()
            _sync(device)
            times[name]["wall"].append(time.perf_counter() - wall)
            times[name]["cpu"].append(time.process_time() - cpu)
    return times


def ratios(reference: list[float], optimised: list[float]) -> dict[str, float]:
    """Speed-up of optimised over reference: of the medians, and the median paired ratio."""
    paired = [r / o for r, o in zip(reference, optimised, strict=True) if o > 0]
    return {
        "median_ratio": statistics.median(reference) / statistics.median(optimised),
        "paired_ratio": statistics.median(paired),
        "paired_min": min(paired),
        "paired_max": max(paired),
    }


def compare_variant(
    name: str,
    width: int,
    depth: int,
    size: int,
    batch_size: int,
    device: torch.device,
    repeats: int,
    warmup: int,
    compile_model: bool,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Both paths of one variant: parity after one step, then interleaved train and infer."""
    import zoo

    torch.manual_seed(0)
    model = zoo.create(name, in_channels=3, out_channels=1, width=width, depth=depth).to(device)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch_size, 3, size, size, generator=generator).to(device)
    y = (torch.rand(batch_size, 1, size, size, generator=generator) > 0.5).float().to(device)
    runners = {p: PathRunner(p, model, x, y, compile_model) for p in ("reference", "optimised")}
    logits_ref, grads_ref = runners["reference"].gradients()
    logits_opt, grads_opt = runners["optimised"].gradients()
    parity = {
        "logits_rel_diff": rel_diff(logits_opt, logits_ref),
        "max_grad_rel_diff": max(rel_diff(a, b) for a, b in zip(grads_opt, grads_ref,
                                                                strict=True)),
    }
    say(f"{name}: width {width}, timing training steps ({repeats} pairs)")
    train = time_pairs({p: r.train_step for p, r in runners.items()}, device, repeats, warmup)
    say(f"{name}: timing inference")
    infer = time_pairs({p: r.infer_step for p, r in runners.items()}, device, repeats, warmup)
    row: dict[str, Any] = {
        "name": name,
        "width": width,
        "depth": depth,
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "parity": parity,
        "train_seconds": train,
        "infer_seconds": infer,
    }
    for mode, times in (("train", train), ("infer", infer)):
        for clock in ("wall", "cpu"):
            row[f"{mode}_{clock}"] = ratios(
                times["reference"][clock], times["optimised"][clock]
            )
        row[f"{mode}_images_per_s"] = {
            p: batch_size / statistics.median(times[p]["wall"]) for p in times
        }
    return row


def run_side_by_side(
    *,
    variants: list[str],
    widths: list[int],
    depth: int,
    size: int,
    batch_size: int = 8,
    repeats: int = 10,
    warmup: int = 2,
    device: str = "cpu",
    compile_model: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The side-by-side document: one row per variant (see the module docstring)."""
    from polypseg.bench.hardware import hardware_info

    if len(widths) != len(variants):
        raise ValueError("give one width per variant")
    say = progress or (lambda _msg: None)
    dev = torch.device(device)
    rows = [
        compare_variant(name, width, depth, size, batch_size, dev, repeats, warmup,
                        compile_model, say)
        for name, width in zip(variants, widths, strict=True)
    ]
    info = hardware_info(device)
    return {
        "kind": KIND,
        "date": time.strftime("%Y-%m-%d"),
        "device": device,
        "device_name": info["device_name"],
        "hardware": info,
        "load_average": _load_average(),
        "settings": {
            "size": size, "batch_size": batch_size, "depth": depth, "repeats": repeats,
            "warmup": warmup, "threads": info["threads"], "compile": compile_model,
        },
        "paths": {
            "reference": "NCHW batches, MONAI DiceCELoss(sigmoid=True), eager",
            "optimised": "channels-last batches, polypseg DiceCELoss"
            + (", torch.compile" if compile_model else ", eager"),
        },
        "models": rows,
    }


def _load_average() -> list[float] | None:
    import os

    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def side_by_side_markdown(doc: dict[str, Any]) -> str:
    """The markdown report of a side-by-side document."""
    settings = doc.get("settings", {})
    lines = [
        f"# Training step: optimised against reference path ({doc.get('device_name', '?')})",
        "",
        f"- Date: {doc.get('date', '?')}; device {doc.get('device')} ({doc.get('device_name')}), "
        f"torch {doc.get('hardware', {}).get('torch', '?')}, threads {settings.get('threads')}, "
        f"load average at the end {doc.get('load_average')}",
        f"- Input: batch {settings.get('batch_size')} x 3 x {settings.get('size')} x "
        f"{settings.get('size')}, depth {settings.get('depth')}; {settings.get('repeats')} "
        f"interleaved pairs after {settings.get('warmup')} warm-up steps per path.",
        f"- Reference: {doc['paths']['reference']}.",
        f"- Optimised: {doc['paths']['optimised']}.",
    ]
    if doc.get("command"):
        lines.append(f"- Command: `{doc['command']}`")
    lines += [
        "",
        "Speed-up = reference time / optimised time (1.30x: 30 % more steps per second). "
        "'paired' is the median over back-to-back pairs; CPU is the process's CPU time.",
        "",
        "| variant | width | params | train speed-up: wall (paired) | train: CPU (paired) "
        "| infer speed-up: wall (paired) | infer: CPU (paired) | optimised train img/s "
        "| logits / max grad rel. diff |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in doc.get("models", []):
        def cell(key: str, r: dict[str, Any] = row) -> str:
            return f"{r[key]['median_ratio']:.2f}x ({r[key]['paired_ratio']:.2f}x)"

        parity = row["parity"]
        lines.append(
            f"| {row['name']} | {row['width']} | {row['params']:,} | {cell('train_wall')} "
            f"| {cell('train_cpu')} | {cell('infer_wall')} | {cell('infer_cpu')} "
            f"| {row['train_images_per_s']['optimised']:.1f} "
            f"| {parity['logits_rel_diff']:.1e} / {parity['max_grad_rel_diff']:.1e} |"
        )
    return "\n".join(lines) + "\n"
