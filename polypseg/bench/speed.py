"""Speed benchmark: every U-Net variant against a MONAI UNet of similar size, side by side.

All models are built in one process at about the same parameter count (``zoo.match_params``
for the variants; the MONAI UNet's base channels searched to the same target) and timed with
interleaved repeats (repeat r of every model before repeat r+1 of any), so a change in the load
of a shared machine hits every model alike; the ratios to MONAI UNet are the result, the
absolute images/s only describe the machine.

Peak memory: each model alone in a fresh subprocess (:mod:`polypseg.bench.memprobe`), so the
figure is that model's, not the sum of every model resident in the timing process. On CUDA
``torch.cuda.max_memory_allocated`` over one step (weights, optimiser state and activations);
on CPU (Python's tracemalloc does not see torch's allocations) how far the peak resident set
rose during one inference and one training step above the built model and input.

Numerics: the benchmark leaves torch's TF32 switches as they are, which is what ``polypseg
train`` does (torch's defaults: cuDNN convolutions may use TF32 on Ampere and newer GPUs,
float32 matmuls do not); the document records both switches. Equivariance tests, not speed
runs, set full float32 precision.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import zoo
from polypseg.modes import eval_mode, train_mode
from zoo import count_parameters

#: The MONAI UNet baseline: 5 levels (4 stride-2 downsamplings), 2 residual units per block.
MONAI_STRIDES = (2, 2, 2, 2)
MONAI_RES_UNITS = 2


@dataclass
class ModelCase:
    """One model of the speed table and how to rebuild it (``spec``) in a subprocess."""

    name: str
    spec: dict[str, Any]
    model: nn.Module
    params: int
    macs: int | None = None
    times: dict[str, list[float]] = field(default_factory=lambda: {"train": [], "infer": []})


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Build a model from a JSON spec: ``{"kind": "zoo", variant, width, depth}`` or
    ``{"kind": "monai", channels, strides, num_res_units}``."""
    if spec["kind"] == "zoo":
        kwargs = {"width": spec["width"]}
        if spec.get("depth") is not None:
            kwargs["depth"] = spec["depth"]
        return zoo.create(spec["variant"], in_channels=3, out_channels=1, **kwargs)
    if spec["kind"] == "monai":
        from monai.networks.nets import UNet

        return UNet(
            spatial_dims=2,
            in_channels=3,
            out_channels=1,
            channels=tuple(spec["channels"]),
            strides=tuple(spec["strides"]),
            num_res_units=spec["num_res_units"],
        )
    raise ValueError(f"unknown model spec kind {spec['kind']!r}")


def monai_spec(base: int) -> dict[str, Any]:
    """The MONAI UNet spec with base channels ``base`` (doubling over 5 levels)."""
    return {
        "kind": "monai",
        "channels": [base * 2**i for i in range(len(MONAI_STRIDES) + 1)],
        "strides": list(MONAI_STRIDES),
        "num_res_units": MONAI_RES_UNITS,
    }


def match_monai(target_params: int, search: range = range(2, 65)) -> dict[str, Any]:
    """The MONAI UNet spec whose parameter count is closest to ``target_params``."""
    best: tuple[int, dict[str, Any]] | None = None
    for base in search:
        spec = monai_spec(base)
        gap = abs(count_parameters(build_from_spec(spec)) - target_params)
        if best is None or gap < best[0]:
            best = (gap, spec)
        elif gap > best[0]:
            break  # the count grows with base: past the best, only worse
    assert best is not None
    return best[1]


def describe_macs(model: nn.Module, size: int) -> int | None:
    """Multiply-accumulates of one forward pass at ``size`` (``zoo.describe``), if it can tell."""
    import zoo

    try:
        return int(zoo.describe(model, (size, size))["macs"])
    except Exception:  # a foreign model zoo cannot describe: leave the cell empty
        return None


def build_cases(
    variants: list[str], target_params: int, size: int, depth: int | None
) -> list[ModelCase]:
    """MONAI UNet first, then each variant at the width matching ``target_params``.

    Args:
        variants: the zoo variants, in order.
        target_params: the parameter count each model's width (MONAI's channels) is matched to.
        size: side in pixels of the square input the MACs are counted for.
        depth: U-Net depth of the zoo models; ``None``: zoo's default.
    """
    import zoo

    cases = []
    spec = match_monai(target_params)
    model = build_from_spec(spec)
    cases.append(ModelCase("monai-unet", spec, model, count_parameters(model),
                           describe_macs(model, size)))
    for variant in variants:
        kw = {} if depth is None else {"depth": depth}
        width = zoo.match_params(variant, target_params, **kw)
        spec = {"kind": "zoo", "variant": variant, "width": int(width), "depth": depth}
        model = build_from_spec(spec)
        cases.append(ModelCase(variant, spec, model, count_parameters(model),
                               describe_macs(model, size)))
    return cases


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step_fn(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> Callable[[], None]:
    """One optimisation step (Adam, BCE-with-logits): forward, backward, update."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = nn.BCEWithLogitsLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()

    return step


def infer_step_fn(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """One forward pass under ``inference_mode``, in the mode the model is in (the caller sets
    eval mode around the timing)."""

    def step() -> None:
        with torch.inference_mode():
            model(x)

    return step


def _timed(step: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    step()
    _sync(device)
    return time.perf_counter() - start


def time_interleaved(
    steps: dict[str, Callable[[], None]],
    device: torch.device,
    repeats: int,
    warmup: int,
) -> dict[str, list[float]]:
    """Seconds per call of each step: warm-up, then ``repeats`` rounds over all steps.

    Args:
        steps: the calls to time, by name.
        device: synchronised around each call when CUDA.
        repeats: timed rounds over all steps.
        warmup: untimed calls of each step first.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(_timed(step, device))
    return times


def isolated_peaks(
    spec: dict[str, Any], batch: int, size: int, threads: int, device: str = "cpu"
) -> dict[str, Any]:
    """Peak memory (MiB) of an inference and a training step of ``spec`` alone, in a fresh
    subprocess (:mod:`polypseg.bench.memprobe`); ``{}`` if the probe fails.

    Args:
        spec: the model as :func:`build_from_spec` takes it.
        batch: images per step.
        size: side in pixels of the square random batch.
        threads: torch threads of the subprocess.
        device: ``cpu`` or ``cuda``.
    """
    import json
    import subprocess
    import sys

    args = json.dumps(
        {"spec": spec, "batch": batch, "size": size, "threads": threads, "device": device}
    )
    proc = subprocess.run(
        [sys.executable, "-m", "polypseg.bench.memprobe", args],
        capture_output=True, text=True, timeout=1800, check=False,
    )
    if proc.returncode != 0:
        return {}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare_export(
    cases: list[ModelCase], x: torch.Tensor, device: torch.device, repeats: int, warmup: int
) -> list[dict[str, Any]]:
    """Inference of each zoo model against its ``export()``-ed plain twin, interleaved; the
    models run in eval mode and come back in the mode they were in.

    Args:
        cases: the models; only the zoo ones (with ``export()``) are compared.
        x: the input batch ``(B, 3, S, S)`` on ``device``.
        device: synchronised around each timed call when CUDA.
        repeats: timed rounds over every original and exported model.
        warmup: untimed calls of each first.
    """
    steps: dict[str, Callable[[], None]] = {}
    diffs: dict[str, float] = {}
    with contextlib.ExitStack() as modes:
        for case in cases:
            if case.spec["kind"] != "zoo" or not hasattr(case.model, "export"):
                continue
            modes.enter_context(eval_mode(case.model))
            exported = case.model.export().to(device).eval()
            with torch.inference_mode():
                diffs[case.name] = float((case.model(x) - exported(x)).abs().max())
            steps[f"{case.name}/original"] = infer_step_fn(case.model, x)
            steps[f"{case.name}/exported"] = infer_step_fn(exported, x)
        times = time_interleaved(steps, device, repeats, warmup)
    rows = []
    batch = x.shape[0]
    for name, diff in diffs.items():
        original = statistics.median(times[f"{name}/original"])
        exported_t = statistics.median(times[f"{name}/exported"])
        rows.append({
            "name": name,
            "original_images_per_s": batch / original,
            "exported_images_per_s": batch / exported_t,
            "exported_time_ratio": exported_t / original,
            "max_abs_diff": diff,
        })
    return rows


def run_speed(
    *,
    device: str = "cpu",
    size: int = 64,
    batch_size: int = 4,
    repeats: int = 5,
    warmup: int = 1,
    target_params: int = 2_000_000,
    variants: list[str] | None = None,
    depth: int | None = None,
    memory: bool = True,
    export: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the speed benchmark and return its JSON document (see :func:`write_speed`).

    Args:
        device: the device every model runs on.
        size: the side of the square input.
        batch_size: images per step.
        repeats: timed rounds over every model (medians reported).
        warmup: untimed calls of each step first.
        target_params: the parameter count every model is matched to.
        variants: the zoo variants (default: all).
        depth: the U-Nets' depth (``None``: zoo's default).
        memory: measure each model's peak memory in a fresh process.
        export: time each zoo model's ``export()`` against it.
        progress: told what runs now.
    """
    import zoo

    say = progress or (lambda _msg: None)
    dev = torch.device(device)
    torch.manual_seed(0)
    variants = list(variants or zoo.available())
    say(f"building {len(variants)} variants + MONAI UNet at ~{target_params:,} parameters")
    cases = build_cases(variants, target_params, 256, depth)
    for case in cases:
        case.model.to(dev)
    x = torch.randn(batch_size, 3, size, size, device=dev)
    y = (torch.rand(batch_size, 1, size, size, device=dev) > 0.5).float()
    times = _time_cases(cases, x, y, dev, repeats, warmup, say)
    peaks: dict[tuple[str, str], float | None] = {}
    probe_method = None
    if memory:
        probe_method = _probe_peaks(cases, batch_size, size, device, peaks, say)
    rows = _model_rows(cases, times, peaks, batch_size)
    exported = []
    if export:
        say("timing exported models against the originals")
        exported = compare_export(cases, x, dev, repeats, warmup)
    settings = {
        "size": size, "batch_size": batch_size, "repeats": repeats, "warmup": warmup,
        "target_params": target_params, "depth": depth,
    }
    memory_method = _memory_method(dev, probe_method) if memory else "not measured"
    return _speed_document(device, settings, memory_method, rows, exported)


def _time_cases(
    cases: list[ModelCase],
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    repeats: int,
    warmup: int,
    say: Callable[[str], None],
) -> dict[str, dict[str, list[float]]]:
    """``{"train": {name: seconds}, "infer": {name: seconds}}``: every model's training step
    (in train mode), then its inference (in eval mode), interleaved; each model is back in its
    own mode afterwards.

    Args:
        cases: the models.
        x: the input batch ``(B, 3, S, S)``.
        y: the target masks ``(B, 1, S, S)``.
        device: where they run (synchronised around each timed call).
        repeats: timed rounds.
        warmup: untimed calls of each step first.
        say: told what runs now.
    """
    say("timing training steps (interleaved)")
    with contextlib.ExitStack() as modes:
        for case in cases:
            modes.enter_context(train_mode(case.model))
        train_steps = {c.name: train_step_fn(c.model, x, y) for c in cases}
        train_times = time_interleaved(train_steps, device, repeats, warmup)
    say("timing inference (interleaved)")
    with contextlib.ExitStack() as modes:
        for case in cases:
            modes.enter_context(eval_mode(case.model))
        infer_steps = {c.name: infer_step_fn(c.model, x) for c in cases}
        infer_times = time_interleaved(infer_steps, device, repeats, warmup)
    return {"train": train_times, "infer": infer_times}


def _probe_peaks(
    cases: list[ModelCase],
    batch_size: int,
    size: int,
    device: str,
    peaks: dict[tuple[str, str], float | None],
    say: Callable[[str], None],
) -> str | None:
    """Fill ``peaks[name, mode]`` (MiB) from one fresh process per model; return the probe's
    method.

    Args:
        cases: the models.
        batch_size: images per step.
        size: the side of the square input.
        device: where the probe runs.
        peaks: filled with the peak of each model's ``"infer"`` and ``"train"`` step.
        say: told which model is probed.
    """
    method = None
    for case in cases:
        say(f"peak memory: {case.name} (alone in a fresh process)")
        probed = isolated_peaks(case.spec, batch_size, size, torch.get_num_threads(), device)
        method = probed.get("method", method)
        for mode in ("infer", "train"):
            peaks[case.name, mode] = probed.get(mode)
    return method


def _model_rows(
    cases: list[ModelCase],
    times: dict[str, dict[str, list[float]]],
    peaks: dict[tuple[str, str], float | None],
    batch_size: int,
) -> list[dict[str, Any]]:
    """One row per model: its spec, size, times, images/s, ratios to MONAI UNet's medians and
    peaks.

    Args:
        cases: the models (``monai-unet`` among them).
        times: :func:`_time_cases`' seconds per call.
        peaks: the peak memory per (model, mode), where measured.
        batch_size: images per step.
    """
    train_times, infer_times = times["train"], times["infer"]
    base_train = statistics.median(train_times["monai-unet"])
    base_infer = statistics.median(infer_times["monai-unet"])
    rows = []
    for case in cases:
        t_train = statistics.median(train_times[case.name])
        t_infer = statistics.median(infer_times[case.name])
        rows.append({
            "name": case.name,
            "spec": case.spec,
            "width": case.spec.get("width", case.spec.get("channels", [None])[0]),
            "params": case.params,
            "macs": case.macs,
            "macs_size": 256,
            "train_seconds": train_times[case.name],
            "infer_seconds": infer_times[case.name],
            "train_images_per_s": batch_size / t_train,
            "infer_images_per_s": batch_size / t_infer,
            "train_time_ratio": t_train / base_train,
            "infer_time_ratio": t_infer / base_infer,
            "train_peak_mib": peaks.get((case.name, "train")),
            "infer_peak_mib": peaks.get((case.name, "infer")),
        })
    return rows


def _memory_method(device: torch.device, probe_method: str | None) -> str:
    """How the peaks were measured, in words, for the document."""
    if device.type == "cuda":
        return (
            "torch.cuda.max_memory_allocated over one step (weights + optimiser + activations), "
            "one fresh subprocess per model"
        )
    return (
        f"peak resident memory (RSS) during one step minus the RSS after building the "
        f"model and its input, one fresh subprocess per model ({probe_method}); "
        "tracemalloc cannot see torch's allocations"
    )


def _speed_document(
    device: str,
    settings: dict[str, Any],
    memory_method: str,
    rows: list[dict[str, Any]],
    exported: list[dict[str, Any]],
) -> dict[str, Any]:
    """The ``polypseg-speed/1`` document: the machine, the settings (with its threads), the
    TF32 switches as they are, and the rows.

    Args:
        device: the device measured.
        settings: the run's settings but ``threads``.
        memory_method: how the peaks were measured.
        rows: one per model (:func:`_model_rows`).
        exported: the export comparison (:func:`compare_export`).
    """
    from polypseg.bench.hardware import hardware_info

    info = hardware_info(device)
    ordered = ("size", "batch_size", "repeats", "warmup", "target_params", "threads", "depth")
    settings = {**settings, "threads": info["threads"]}
    return {
        "kind": "polypseg-speed/1",
        "date": time.strftime("%Y-%m-%d"),
        "device": device,
        "device_name": info["device_name"],
        "torch": info["torch"],
        "hardware": info,
        "settings": {key: settings[key] for key in ordered},
        "tf32": {
            "cuda_matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn": torch.backends.cudnn.allow_tf32,
            "note": "left as torch sets them, as in polypseg train",
        },
        "memory_method": memory_method,
        "models": rows,
        "exported": exported,
    }


def write_speed(
    doc: dict[str, Any],
    out_dir: str | Path,
    stem: str = "speed",
    render: Callable[[dict[str, Any]], str] | None = None,
) -> tuple[Path, Path]:
    """Write ``STEM.json`` and ``STEM.md`` into ``out_dir`` (atomically); return both paths.

    ``render`` makes the markdown (default: the speed table of :mod:`polypseg.bench.report`).

    Args:
        doc: the speed document (``bench speed``'s or the side-by-side one).
        out_dir: the folder of both files (created if missing).
        stem: the files' stem.
        render: makes the markdown from ``doc``; ``None``: the speed table of
            :mod:`polypseg.bench.report`.
    """
    from polypseg.atomic import atomic_write_json, atomic_write_text

    if render is None:
        from polypseg.bench.report import speed_markdown as render

    out = Path(out_dir)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    atomic_write_json(json_path, doc)
    atomic_write_text(md_path, render(doc))
    return json_path, md_path
