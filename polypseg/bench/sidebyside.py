"""``polypseg bench speed --side-by-side``: each variant's training step (and inference) on the
reference path and on the optimised path, timed alternately, as ratios.

* **reference** ("today"): NCHW batches, MONAI's ``DiceCELoss(sigmoid=True)``, the model as zoo
  builds it, eager, glibc's malloc as it comes: what a training step was before the speed work.
* **optimised** (what ``polypseg train`` now does on CPU): channels-last batches (zoo's
  per-field batch norm and upsampling adjoint on NHWC maps, :mod:`zoo.norm`,
  :mod:`zoo.pooling`), polypseg's torch-only Dice + CE loss, glibc's malloc tuned for large
  tensors (:func:`polypseg.training.performance.tune_allocator`), and with ``compile=True``
  ``torch.compile`` of the model.

The allocator setting is process-wide, so each path lives in its own worker process (started
fresh, same seeds: same weights and batch); the coordinator asks them for one step at a time,
alternating (reference, optimised, reference, ...), so a change of load on a shared machine hits
both alike, and only one of them computes at any moment. A training step is AdamW (the training
loop's settings) after forward, loss and backward. Each call is timed by the wall clock and by
the worker's CPU time (which on one thread does not count the time the scheduler gives the core
to other jobs). The result per variant: the ratio of the median times (reference / optimised:
1.3 means 30 % more steps per second) and the median of the ratios of back-to-back pairs, plus
how far the two paths' logits and gradients differ after one step from the same weights
(float32 rounding: the paths run other kernels).

Inference runs what ``evaluate``, ``sweep`` and ``predict`` run: :func:`polypseg.inference.
predict_probs` (eval mode, ``inference_mode``, sigmoid) on an NCHW batch as the data pipeline
makes it, which the optimised path feeds channels-last (its default on CPU) and the reference
path as it is. ``modes=("infer",)`` (``--infer-only``) times only inference and checks the
eval-mode logits of the two paths instead of a training step's.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from polypseg.modes import eval_mode, train_mode

KIND = "polypseg-speed-side-by-side/1"
PATHS = ("reference", "optimised")
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
    """One path of one variant: its model, optimiser, loss and input layout.

    Args:
        path: ``reference`` or ``optimised``: which loss and input layout the runner uses.
        model: the variant's model, trained in place by :meth:`train_step`.
        x: the input batch ``(B, 3, S, S)``, kept in the path's memory format.
        y: the target masks ``(B, 1, S, S)`` in {0, 1}.
        compile_model: ``torch.compile`` the model (the optimised path only).
    """

    def __init__(
        self, path: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, compile_model: bool
    ) -> None:
        self.path = path
        self.model = model
        self.net = torch.compile(model) if compile_model and path == "optimised" else model
        self.x = x.contiguous(memory_format=_layout(path))
        self.x_nchw = x.contiguous()
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
        """Probabilities of the batch as inference computes them (the path's memory format)."""
        from polypseg.inference import predict_probs

        predict_probs(self.net, self.x_nchw, channels_last=self.path == "optimised")

    def eval_logits(self) -> torch.Tensor:
        """Eval-mode logits of the batch through the path's memory format (NCHW result)."""
        from polypseg.inference import forward_logits

        with eval_mode(self.model), torch.inference_mode():
            return forward_logits(self.net, self.x_nchw, self.path == "optimised").clone()

    def gradients(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and parameter gradients of one forward/backward from the current weights
        (the batch norm buffers it moves are put back)."""
        with train_mode(self.model):
            self.model.zero_grad(set_to_none=True)
            state = copy.deepcopy(self.model.state_dict())
            logits = self.net(self.x)
            self.loss_fn(logits, self.y).backward()
            grads = [p.grad.detach().clone() for p in self.model.parameters()]
            self.model.zero_grad(set_to_none=True)
            self.model.load_state_dict(state)
        return logits.detach().contiguous(), [g.contiguous() for g in grads]


def build_runner(
    path: str, name: str, width: int, depth: int, size: int, batch_size: int, device: str,
    compile_model: bool,
) -> PathRunner:
    """The runner of ``path``: the model from seed 0, the batch from seed 1 (equal in both).

    Args:
        path: ``reference`` or ``optimised``.
        name: the zoo variant.
        width: its first-stage width.
        depth: its U-Net depth.
        size: side in pixels of the square batch.
        batch_size: images in the batch.
        device: the torch device string of the model and batch.
        compile_model: ``torch.compile`` the optimised path's model.
    """
    import zoo

    torch.manual_seed(0)
    dev = torch.device(device)
    model = zoo.create(name, in_channels=3, out_channels=1, width=width, depth=depth).to(dev)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch_size, 3, size, size, generator=generator).to(dev)
    y = (torch.rand(batch_size, 1, size, size, generator=generator) > 0.5).float().to(dev)
    return PathRunner(path, model, x, y, compile_model)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(call: Callable[[], None], device: torch.device) -> tuple[float, float]:
    _sync(device)
    cpu, wall = time.process_time(), time.perf_counter()
    call()
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def worker(conn: Any, path: str, threads: int, build: dict[str, Any]) -> None:
    """A path's process: set threads (and the allocator), build, then serve commands from
    ``conn``: ``parity``, ``logits``, ``train``, ``infer`` (one timed call: ``(wall, cpu)``),
    ``stop``.

    Args:
        conn: this process's end of a ``multiprocessing`` pipe to the coordinator.
        path: ``reference`` or ``optimised``.
        threads: torch threads of this process.
        build: the keyword arguments of :func:`build_runner` other than ``path``.
    """
    torch.set_num_threads(threads)
    if path == "optimised":
        from polypseg.training.performance import tune_allocator

        tune_allocator()
    runner = build_runner(path, **build)
    device = runner.x.device
    calls = {"train": runner.train_step, "infer": runner.infer_step}
    conn.send("ready")
    while True:
        command = conn.recv()
        if command == "stop":
            conn.close()
            return
        if command == "parity":
            conn.send(runner.gradients())
        elif command == "logits":
            conn.send(runner.eval_logits())
        else:
            conn.send(_timed(calls[command], device))


class PathPair:
    """The two worker processes of one variant (``spawn``: fresh interpreters)."""

    def __init__(self, threads: int, build: dict[str, Any]) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.conns: dict[str, Any] = {}
        self.procs = []
        for path in PATHS:
            parent, child = context.Pipe()
            proc = context.Process(target=worker, args=(child, path, threads, build),
                                   daemon=True)
            proc.start()
            child.close()
            self.conns[path] = parent
            self.procs.append(proc)
        for path in PATHS:
            if self._receive(path) != "ready":
                raise RuntimeError(f"the {path} worker did not start")

    def _receive(self, path: str) -> Any:
        try:
            return self.conns[path].recv()
        except EOFError:
            raise RuntimeError(f"the {path} worker process died (see its error above)") from None

    def ask(self, path: str, command: str) -> Any:
        """Send one command to a path's worker and wait for its answer."""
        self.conns[path].send(command)
        return self._receive(path)

    def close(self) -> None:
        """Stop both workers."""
        for path in PATHS:
            with contextlib.suppress(BrokenPipeError, OSError):
                self.conns[path].send("stop")
        for proc in self.procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()


def time_pairs(
    pair: PathPair, command: str, repeats: int, warmup: int
) -> dict[str, dict[str, list[float]]]:
    """``{path: {"wall": [...], "cpu": [...]}}``: seconds per call, the paths alternating.

    Args:
        pair: the two path workers of one variant.
        command: ``train`` or ``infer``: the call timed.
        repeats: timed calls per path.
        warmup: untimed calls per path first.
    """
    for path in PATHS:
        for _ in range(warmup):
            pair.ask(path, command)
    times: dict[str, dict[str, list[float]]] = {p: {"wall": [], "cpu": []} for p in PATHS}
    for _ in range(repeats):
        for path in PATHS:
            wall, cpu = pair.ask(path, command)
            times[path]["wall"].append(wall)
            times[path]["cpu"].append(cpu)
    return times


def rel_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max|actual - expected| / max|expected|``."""
    scale = float(expected.abs().max())
    return float((actual - expected).abs().max()) / scale if scale > 0 else 0.0


def grad_rel_diff(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> float:
    """``max|actual - expected|`` over every parameter's gradient, over the step's largest
    gradient: rounding is relative to the gradients' scale, so a parameter whose gradient is
    tiny (a bias behind a batch norm) carries the rounding of the large ones and is not judged
    against its own size."""
    scale = max(float(e.abs().max()) for e in expected)
    worst = max(float((a - e).abs().max()) for a, e in zip(actual, expected, strict=True))
    return worst / scale if scale > 0 else 0.0


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
    device: str,
    repeats: int,
    warmup: int,
    compile_model: bool,
    threads: int,
    say: Callable[[str], None],
    modes: tuple[str, ...] = ("train", "infer"),
) -> dict[str, Any]:
    """Both paths of one variant: parity (after one training step, or of the eval-mode logits
    without ``"train"`` in ``modes``), then the ``modes`` alternating.

    Args:
        name: the zoo variant.
        width: its first-stage width.
        depth: its U-Net depth.
        size: side in pixels of the square batch.
        batch_size: images per call.
        device: the torch device string both workers run on.
        repeats: timed calls per path and mode.
        warmup: untimed calls per path and mode first.
        compile_model: ``torch.compile`` the optimised path's model.
        threads: torch threads of each worker process.
        say: called with one progress line per stage.
        modes: what is timed: ``train`` and/or ``infer``.
    """
    build = {"name": name, "width": width, "depth": depth, "size": size,
             "batch_size": batch_size, "device": device, "compile_model": compile_model}
    say(f"{name}: width {width}, starting the two path workers")
    pair = PathPair(threads, build)
    timed: dict[str, dict[str, dict[str, list[float]]]] = {}
    try:
        eval_ref = pair.ask("reference", "logits")
        eval_opt = pair.ask("optimised", "logits")
        parity: dict[str, float] = {
            "eval_logits_max_abs_diff": float((eval_opt - eval_ref).abs().max()),
            "eval_logits_rel_diff": rel_diff(eval_opt, eval_ref),
        }
        if "train" in modes:
            logits_ref, grads_ref = pair.ask("reference", "parity")
            logits_opt, grads_opt = pair.ask("optimised", "parity")
            parity["logits_rel_diff"] = rel_diff(logits_opt, logits_ref)
            parity["max_grad_rel_diff"] = grad_rel_diff(grads_opt, grads_ref)
        for mode in modes:
            say(f"{name}: timing {mode} ({repeats} pairs)")
            timed[mode] = time_pairs(pair, mode, repeats, warmup)
    finally:
        pair.close()
    import zoo

    row: dict[str, Any] = {
        "name": name,
        "width": width,
        "depth": depth,
        "params": zoo.count_parameters(
            zoo.create(name, in_channels=3, out_channels=1, width=width, depth=depth)
        ),
        "parity": parity,
        **{f"{mode}_seconds": times for mode, times in timed.items()},
    }
    for mode, times in timed.items():
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
    modes: tuple[str, ...] = ("train", "infer"),
) -> dict[str, Any]:
    """The side-by-side document: one row per variant (see the module docstring); ``modes``
    says what is timed (``train``, ``infer``).

    Args:
        variants: the zoo variants, one row each.
        widths: their first-stage widths, one per variant.
        depth: the U-Net depth of every variant.
        size: side in pixels of the square batch.
        batch_size: images per call.
        repeats: timed calls per path and mode.
        warmup: untimed calls per path and mode first.
        device: the torch device string the workers run on.
        compile_model: ``torch.compile`` the optimised path's model.
        progress: called with one progress line per stage; ``None``: silent.
        modes: what is timed: ``train`` and/or ``infer``.
    """
    from polypseg.bench.hardware import hardware_info

    if len(widths) != len(variants):
        raise ValueError("give one width per variant")
    say = progress or (lambda _msg: None)
    threads = torch.get_num_threads()
    rows = [
        compare_variant(name, width, depth, size, batch_size, device, repeats, warmup,
                        compile_model, threads, say, modes)
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
            "modes": list(modes),
        },
        "paths": _path_notes(modes, compile_model),
        "workers": "one process per path, fresh (spawn), called alternately",
        "models": rows,
    }


def _path_notes(modes: tuple[str, ...], compile_model: bool) -> dict[str, str]:
    engine = ", torch.compile" if compile_model else ", eager"
    if "train" not in modes:
        return {
            "reference": "polypseg.inference.predict_probs on NCHW batches (channels_last=False), "
            "glibc malloc as it comes",
            "optimised": "polypseg.inference.predict_probs with channels-last batches (the CPU "
            "default), glibc malloc tuned (tune_allocator)" + engine,
        }
    return {
        "reference": "NCHW batches, MONAI DiceCELoss(sigmoid=True), eager, glibc malloc as it "
        "comes",
        "optimised": "channels-last batches, polypseg DiceCELoss, glibc malloc tuned "
        "(tune_allocator)" + engine,
    }


def _load_average() -> list[float] | None:
    import os

    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def side_by_side_markdown(doc: dict[str, Any]) -> str:
    """The markdown report of a side-by-side document (training and inference, or inference
    only when ``settings.modes`` lacks ``train``), on :func:`~polypseg.bench.report.speed_page`."""
    from polypseg.bench.report import _table, speed_page

    settings = doc.get("settings", {})
    with_train = "train" in settings.get("modes", ["train", "infer"])
    title = "Training step" if with_train else "Inference"
    facts = [
        f"Date: {doc.get('date', '?')}; device {doc.get('device')} ({doc.get('device_name')}), "
        f"torch {doc.get('hardware', {}).get('torch', '?')}, threads {settings.get('threads')}, "
        f"load average at the end {doc.get('load_average')}",
        f"Input: batch {settings.get('batch_size')} x 3 x {settings.get('size')} x "
        f"{settings.get('size')}, depth {settings.get('depth')}; {settings.get('repeats')} "
        f"interleaved pairs after {settings.get('warmup')} warm-up steps per path.",
        f"Reference: {doc['paths']['reference']}.",
        f"Optimised: {doc['paths']['optimised']}.",
        f"Workers: {doc.get('workers', 'one process')}.",
    ]
    header = _TRAIN_HEADER if with_train else _INFER_HEADER
    rows = [_side_by_side_row(row, with_train) for row in doc.get("models", [])]
    body = [
        "Speed-up = reference time / optimised time (1.30x: 30 % more steps per second). "
        "'paired' is the median over back-to-back pairs; CPU is the process's CPU time.",
        "",
        *_table(header, rows, ["---", *("--:" for _ in header[1:])]),
    ]
    heading = f"{title}: optimised against reference path ({doc.get('device_name', '?')})"
    return speed_page(heading, facts, doc.get("command"), body)


#: The side-by-side table's columns with training, and for inference only.
_TRAIN_HEADER = (
    "variant", "width", "params", "train speed-up: wall (paired)", "train: CPU (paired)",
    "infer speed-up: wall (paired)", "infer: CPU (paired)", "optimised train img/s",
    "logits / max grad rel. diff",
)
_INFER_HEADER = (
    "variant", "width", "params", "infer speed-up: wall (paired)", "infer: CPU (paired)",
    "reference img/s", "optimised img/s", "eval logits max abs / rel. diff",
)


def _side_by_side_row(row: dict[str, Any], with_train: bool) -> list[str]:
    """One variant's cells: speed-ups ``median (paired)``, images/s and parity."""

    def cell(key: str) -> str:
        return f"{row[key]['median_ratio']:.2f}x ({row[key]['paired_ratio']:.2f}x)"

    parity = row["parity"]
    start = [row["name"], str(row["width"]), f"{row['params']:,}"]
    if with_train:
        return [
            *start, cell("train_wall"), cell("train_cpu"), cell("infer_wall"), cell("infer_cpu"),
            f"{row['train_images_per_s']['optimised']:.1f}",
            f"{parity['logits_rel_diff']:.1e} / {parity['max_grad_rel_diff']:.1e}",
        ]
    speeds = row["infer_images_per_s"]
    return [
        *start, cell("infer_wall"), cell("infer_cpu"), f"{speeds['reference']:.1f}",
        f"{speeds['optimised']:.1f}",
        f"{parity['eval_logits_max_abs_diff']:.1e} / {parity['eval_logits_rel_diff']:.1e}",
    ]
