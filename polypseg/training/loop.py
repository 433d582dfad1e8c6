"""The training loop: :func:`train` turns a :class:`TrainConfig` into a run folder.

Run folder (``config.out``)::

    RUN/config.json                 resolved configuration
    RUN/split.json                  the split used (a copy of --split-file, or the default split)
    RUN/checkpoints/best.{safetensors,json}   highest validation Dice
    RUN/checkpoints/last.{safetensors,json}   end of the latest epoch
    RUN/checkpoints/last_state.pt   resume state (optimizer, scheduler, RNG, position, history)
    RUN/metrics.csv                 one row per epoch
    RUN/tb/                         TensorBoard events

One optimiser step: Dice + cross-entropy (:class:`~polypseg.training.losses.DiceCELoss`, MONAI's
``DiceCELoss(sigmoid=True)`` in torch alone) on the logits, AdamW, then the warm-up +
cosine schedule steps. After each epoch the validation Dice (MONAI ``DiceMetric``, threshold
``config.threshold``, per image, gathered over all ranks) picks the best checkpoint and drives
early stopping. Data order and augmentation depend only on ``(seed, epoch, position)``, so a
resumed run (``config.resume``) continues exactly where the saved state left off, mid-epoch too.

At the end of an epoch the resume state is written first: it is the commit point. A run killed
before it resumes from the previous state (that epoch is trained again); one killed after it
resumes from it and rewrites the ``best``/``last`` checkpoints and ``metrics.csv`` that the kill
left behind, from the state. ``--resume`` of a run killed before its first resume state starts it
again from epoch 1. Temporaries of interrupted writes are removed when a run (re)starts.

Speed (:mod:`polypseg.training.performance`): batches go channels-last on CPU, glibc's malloc
keeps large blocks warm, and the next batches load in a thread while a step runs.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from polypseg.atomic import atomic_write_bytes, atomic_write_json, remove_stale_temps
from polypseg.checkpoint import CheckpointMeta
from polypseg.errors import RunError
from polypseg.modes import eval_mode, train_mode
from polypseg.paths import portable_tree
from polypseg.training import distributed as dist_
from polypseg.training.config import TrainConfig
from polypseg.training.datasets import choose_split, eval_dataset, shard, subset_pairs
from polypseg.training.interrupt import StopFlag
from polypseg.training.logs import TensorBoardLog, write_metrics_csv
from polypseg.training.losses import DiceCELoss
from polypseg.training.models import build_model, input_spec, recorded_options_of
from polypseg.training.performance import (
    channels_last_default,
    compiled,
    memory_format,
    tune_allocator,
)
from polypseg.training.prefetch import prefetch
from polypseg.training.progress import Bars, bars, want_progress
from polypseg.training.sampling import RepeatedDataset, ResumableSampler, SeededAugmentation
from polypseg.training.schedule import warmup_cosine
from polypseg.training.state import (
    capture_rng,
    check_identity,
    load_resume_state,
    restore_rng,
    save_resume_state,
    state_path,
)
from zoo import count_parameters
from zoo.optim import param_groups, regularisation


@dataclass
class StepInfo:
    """What a callback learns after each optimiser step."""

    epoch: int  # 0-based epoch being trained
    batch: int  # batches done in this epoch
    step: int  # optimiser steps done in the whole run
    loss: float  # loss of this step's batch (this rank)


class TrainCallback:
    """Hooks into :func:`train`; override what you need (each is called on every rank)."""

    def on_step_end(self, info: StepInfo) -> None:
        """After an optimiser step (raising ``KeyboardInterrupt`` here stops like Ctrl-C)."""

    def on_epoch_end(self, row: dict[str, Any]) -> None:
        """After an epoch's validation and files; ``row`` is its ``metrics.csv`` row."""


class _StopRequested(Exception):
    """Raised between steps when a stop signal arrived."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _make_deterministic() -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def train(config: TrainConfig, callbacks: Sequence[TrainCallback] = ()) -> Path:
    """Train ``config.variant`` on ``config.data``; return the run folder.

    Raises :class:`~polypseg.errors.PolypsegError` subclasses for bad input (unknown model,
    missing data, empty split, a resume that does not match) and ``KeyboardInterrupt`` after
    saving a resumable state when stopped by Ctrl-C (or by a callback raising it).
    Under ``torchrun`` every process calls this; only rank 0 writes files.
    """
    config.validate()
    tune_allocator()
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    ctx = dist_.setup(config.device)
    trainer: _Trainer | None = None
    try:
        with StopFlag() as flag:
            trainer = _Trainer(config, ctx, list(callbacks), flag)
            return trainer.run()
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        if trainer is not None:
            del trainer.net  # the DDP wrapper goes before its process group (dist_.teardown)
        dist_.teardown(ctx)


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


class _Trainer:
    """One training run: set up once, then :meth:`run` the epochs."""

    def __init__(
        self, config: TrainConfig, ctx: dist_.Dist, callbacks: list[TrainCallback], flag: StopFlag
    ) -> None:
        self.config, self.ctx, self.callbacks, self.flag = config, ctx, callbacks, flag
        self.run_dir = config.run_dir()
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.saved = self._load_or_refuse()
        seed_everything(config.seed)
        if config.deterministic:
            _make_deterministic()
        self._resolve_model()
        self._setup_data()
        self._setup_model()
        self._setup_progress()
        if self.saved is not None:
            self._restore(self.saved)
        self.rng_snapshot = capture_rng()

    # -- setup ------------------------------------------------------------------------------
    def _load_or_refuse(self) -> dict[str, Any] | None:
        self.notes: list[str] = []
        if self.config.resume:
            if not state_path(self.run_dir).exists() and (self.run_dir / "config.json").is_file():
                self.notes.append(
                    f"{self.run_dir} holds no resume state: the run was stopped before the end of "
                    "its first epoch was saved; training it again from epoch 1"
                )
                return None
            return load_resume_state(state_path(self.run_dir))
        if state_path(self.run_dir).exists() or (self.ckpt_dir / "best.json").exists():
            raise RunError(
                f"run folder {self.run_dir} already holds a run; continue it with --resume "
                "or train into another --out"
            )
        return None

    def _resolve_model(self) -> None:
        """The model and its specs, first: the depth they resolve (the zoo's default unless
        ``config.depth``) fixes the size rule of the data's transforms."""
        config = self.config
        options = dict(config.model_options)
        if self.saved is not None:  # a run recorded before an option existed resumes as built
            options = recorded_options_of(self.saved["identity"].get("model") or {}, options)
        self.model, self.model_spec = build_model(
            config.variant, config.width, config.depth, options
        )
        self.input_spec = input_spec(config.size, self.model_spec, config.threshold)

    def _setup_data(self) -> None:
        from polypseg.data import SegmentationDataset, build_transforms, discover

        config, spec = self.config, self.input_spec
        self.index = discover(config.data)
        self.split_choice = choose_split(
            self.index,
            config.split_file,
            self.run_dir if config.resume else None,
            config.split_seed,
        )
        split = self.split_choice.split
        self.train_pairs = subset_pairs(self.index, split, "train", config.limit_train)
        self.val_pairs = subset_pairs(self.index, split, "val", config.limit_val)
        train_set = SegmentationDataset(
            self.train_pairs,
            build_transforms(spec.size, train=True, rot_aug=config.rot_aug, depth=spec.depth),
        )
        if config.epoch_repeats > 1:  # a small set's epoch takes a large one's steps
            train_set = RepeatedDataset(train_set, config.epoch_repeats)
        self.n_negatives = 0
        if config.negatives > 0:  # else the data is exactly as without the option
            train_set = self._with_negatives(train_set)
        self.train_set = SeededAugmentation(train_set, config.seed)
        val_set = eval_dataset(self.val_pairs, spec.size, spec.depth)
        self.val_set, self.val_indices = shard(val_set, self.ctx.rank, self.ctx.world_size)
        self.n_val = len(val_set)

    def _with_negatives(self, positives: Any) -> Any:
        """``positives`` followed by this epoch's background-only views (``config.negatives``
        of the epoch), cut from the training images and the frames of ``negatives_dir``."""
        from polypseg.data.negatives import NegativeMix, NegativeSource, list_frames, negative_count

        config = self.config
        frames = list_frames(config.negatives_dir) if config.negatives_dir else []
        self.n_negatives = negative_count(len(positives), config.negatives)
        source = NegativeSource(self.train_pairs, frames)
        return NegativeMix(positives, source, self.n_negatives, config.seed)

    def _setup_model(self) -> None:
        config, ctx = self.config, self.ctx
        self.identity = {
            "variant": config.variant,
            "model": self.model_spec.config,
            "size": self.input_spec.size,
            "split_sha256": self.split_choice.sha256,
            "batch_size": config.batch_size,
        }
        if config.negatives > 0:  # absent at 0: runs from before the option resume as they are
            self.identity["negatives"] = config.negatives
        if self.saved is not None:
            check_identity(self.saved["identity"], self.identity, self.run_dir)
        self.model.to(ctx.device)
        self.net = compiled(dist_.wrap_model(ctx, self.model), config.compile)
        channels_last = config.channels_last
        if channels_last is None:
            channels_last = channels_last_default(ctx.device)
        self.memory_format = memory_format(channels_last)
        self.amp = config.amp and ctx.device.type == "cuda"
        if config.amp and not self.amp and ctx.is_main and not config.quiet:
            print("note: --amp needs CUDA; training in float32 on", ctx.device)
        self.loss_fn = DiceCELoss()
        # per-parameter decay / lr asked for by zoo layers (one group for most variants)
        self.optimizer = torch.optim.AdamW(
            param_groups(self.model, config.lr, config.weight_decay),
            lr=config.lr, weight_decay=config.weight_decay,
        )
        self.sampler = ResumableSampler(self.train_set, ctx.world_size, ctx.rank, config.seed)
        self.steps_per_epoch = math.ceil(self.sampler.num_samples / config.batch_size)
        self.scheduler = warmup_cosine(
            self.optimizer,
            warmup_steps=round(config.warmup_epochs * self.steps_per_epoch),
            total_steps=config.epochs * self.steps_per_epoch,
            min_ratio=config.min_lr_ratio,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.workers = (
            dist_.auto_workers(ctx.device) if config.workers is None else config.workers
        )
        self.n_params = count_parameters(self.model)
        # position in training
        self.epoch, self.batches_done, self.step = 0, 0, 0
        self.loss_sum, self.loss_count = 0.0, 0  # the epoch's, summed over ranks
        self.pending_loss = (0.0, 0)  # this rank's last step, until _end_step adds it
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.history: list[dict[str, Any]] = []
        self.updating = False
        # (step, loss on the device, images, lr) of steps whose loss is not read back yet

    def _setup_progress(self) -> None:
        config, ctx = self.config, self.ctx
        self.show = ctx.is_main and not config.quiet
        self.progress_enabled = self.show and want_progress(config.progress)
        # events logged after the saved step belong to the lost continuation: drop them
        purge = int(self.saved["step"]) + 1 if self.saved is not None else None
        self.tb = TensorBoardLog(self.run_dir / "tb", enabled=ctx.is_main, purge_step=purge)

    def _restore(self, state: dict[str, Any]) -> None:
        from polypseg.checkpoint import load_into

        data = state["data_order"]
        if state["batches_done"] and data["world_size"] != self.ctx.world_size:
            raise RunError(
                f"cannot resume {self.run_dir} mid-epoch with {self.ctx.world_size} process(es): "
                f"it was saved by {data['world_size']}; resume with the same number"
            )
        load_into(self.model, state["model"], source=f"resume state of {self.run_dir}")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.batches_done = int(state["batches_done"])
        self.step = int(state["step"])
        self.loss_sum, self.loss_count = float(state["loss_sum"]), int(state["loss_count"])
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.bad_epochs = int(state["bad_epochs"])
        self.history = list(state["history"])
        restore_rng(state["rng"])

    # -- files ------------------------------------------------------------------------------
    def _write_run_files(self) -> None:
        if not self.ctx.is_main:
            return
        leftovers = remove_stale_temps(self.run_dir) + remove_stale_temps(self.ckpt_dir)
        if leftovers:
            self.notes.append(f"removed {len(leftovers)} temporary file(s) of interrupted writes")
        if self.saved is not None:
            self._repair_epoch_files(self.saved)
        split_copy = self.run_dir / "split.json"
        source = self.config.split_file
        if source is not None and Path(source).resolve() != split_copy.resolve():
            atomic_write_bytes(split_copy, Path(source).read_bytes())
        elif not split_copy.exists():
            self.split_choice.split.save(split_copy)
        atomic_write_json(
            self.run_dir / "config.json",
            {**portable_tree(self.config.to_dict()), "resolved_model": self.model_spec.config,
             "split_sha256": self.split_choice.sha256, "world_size": self.ctx.world_size,
             "resolved_workers": self.workers},
        )

    def _model_state(self) -> dict[str, torch.Tensor]:
        with train_mode(self.model):
            return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def _save_state(self) -> None:
        save_resume_state(
            state_path(self.run_dir),
            {
                "identity": self.identity,
                "model": self._model_state(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.amp else {},
                "epoch": self.epoch,
                "batches_done": self.batches_done,
                "step": self.step,
                # a stop between a step and _end_step (Ctrl-C twice, a callback) adds that
                # step's loss of this rank: exact in a single process
                "loss_sum": self.loss_sum + self.pending_loss[0],
                "loss_count": self.loss_count + self.pending_loss[1],
                "best": self.best,
                "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs,
                "history": self.history,
                "rng": self.rng_snapshot,
                "data_order": {
                    "seed": self.config.seed,
                    "epoch": self.epoch,
                    "skip_batches": self.batches_done,
                    "batch_size": self.config.batch_size,
                    "world_size": self.ctx.world_size,
                },
            },
        )

    def _repair_epoch_files(self, state: dict[str, Any]) -> None:
        """Make the checkpoints and ``metrics.csv`` agree with the resume state ``state``.

        A kill between the resume state and the files written after it leaves ``last``
        (and ``best``) of the epoch before; the state holds the weights and the history to
        rewrite them. Checkpoints newer than the state (an older version wrote them first) are
        replaced when that epoch is trained again.
        """
        from polypseg.checkpoint import read_meta, save_checkpoint
        from polypseg.errors import PolypsegError

        def epoch_of(which: str) -> int | None:
            try:
                return int(read_meta(self.ckpt_dir / which).epoch)  # None: TypeError
            except (PolypsegError, TypeError, ValueError):
                return None

        epoch, history = int(state["epoch"]), list(state["history"])
        last = epoch_of("last")
        if last is not None and last > epoch:
            self.notes.append(
                f"checkpoints of epoch {last} were written after the last resume state "
                f"(epoch {epoch}): epoch(s) {epoch + 1}-{last} are trained again"
            )
        if state["batches_done"] or not history or last == epoch:
            return
        rewritten = ["last"]
        stale = [("last", last)]
        if state["best_epoch"] == epoch and epoch_of("best") != epoch:
            rewritten.insert(0, "best")
            stale.insert(0, ("best", epoch_of("best")))
        meta = self._checkpoint_meta(history[-1])
        for which in rewritten:
            save_checkpoint(self.ckpt_dir / which, self.model, meta)
        write_metrics_csv(self.run_dir / "metrics.csv", history)
        self.notes.append(
            f"the run was stopped while writing epoch {epoch}'s files: rewrote "
            + ", ".join(f"{w} (was {'missing' if e is None else f'epoch {e}'})" for w, e in stale)
            + " and metrics.csv from its resume state; nothing was lost"
        )

    def _checkpoint_meta(self, row: dict[str, Any]) -> CheckpointMeta:
        from polypseg.checkpoint import library_versions

        split = self.split_choice.split
        return CheckpointMeta(
            model=self.model_spec,
            input=self.input_spec,
            epoch=row["epoch"],
            step=row["step"],
            metrics={k: row[k] for k in ("train_loss", "val_loss", "val_dice")},
            split_sha256=self.split_choice.sha256,
            split={"dataset": split.dataset, "rule": split.rule, "seed": split.seed},
            params=self.n_params,
            args=portable_tree(self.config.to_dict()),
            versions=library_versions(),
        )

    # -- the loop ---------------------------------------------------------------------------
    def _complete(self) -> bool:
        return self.epoch >= self.config.epochs or (self.batches_done == 0 and self._patience_out())

    def _patience_out(self) -> bool:
        """Whether early stopping ends the run here: ``patience`` epochs without a better
        validation Dice, and at least ``min_epochs`` epochs trained."""
        patience = self.config.patience
        return (patience > 0 and self.bad_epochs >= patience
                and self.epoch >= self.config.min_epochs)

    def run(self) -> Path:
        """Train the remaining epochs; return the run folder."""
        self._write_run_files()
        for note in self.notes:
            self._say(f"note: {note}")
        if self._complete():
            self._say(f"{self.run_dir}: already complete ({self.epoch} epochs); nothing to do")
            self.tb.close()
            return self.run_dir
        self._say(
            f"training {self.config.variant} ({self.n_params:,} parameters) on "
            f"{len(self.train_pairs)} images"
            + (f" + {self.n_negatives} negatives" if self.n_negatives else "")
            + f", validating on {self.n_val}, "
            f"{self.steps_per_epoch} steps/epoch, device {self.ctx.device}"
            + (f" x{self.ctx.world_size}" if self.ctx.enabled else "")
            + (f"; resuming at epoch {self.epoch + 1}, step {self.step}" if self.saved else "")
        )
        try:
            with bars(self.progress_enabled) as progress:
                self._bars = progress
                while not self._complete():
                    started = time.perf_counter()
                    self._train_epoch(progress)
                    self._end_epoch(time.perf_counter() - started)
        except (KeyboardInterrupt, _StopRequested):
            self._save_interrupted()
            raise KeyboardInterrupt from None
        finally:
            self.tb.close()
        self._say(
            f"done: best val Dice {self.best:.4f} at epoch {self.best_epoch}; "
            f"checkpoints in {self.ckpt_dir}"
        )
        self._calibrate()
        return self.run_dir

    def _calibrate(self) -> None:
        """Choose the best checkpoint's frame-level decision on the validation images and
        their negatives and write it into its metadata (after training: nothing it does
        reaches the batches)."""
        if not self.ctx.is_main or not (self.ckpt_dir / "best.json").is_file():
            return
        from polypseg.negatives_eval import calibrate_checkpoint

        decision = calibrate_checkpoint(self.ckpt_dir / "best", self.val_pairs,
                                        self.config.target_specificity, str(self.ctx.device))
        self._say(
            "frame-level decision (best checkpoint): polyp present when the largest region "
            f"covers >= {decision['min_area_fraction']:.2%} and the peak probability is >= "
            f"{decision['min_peak_probability']:.3f}; on validation: sensitivity "
            f"{_rate(decision.get('val_sensitivity'))}, specificity "
            f"{_rate(decision.get('val_specificity'))} (target "
            f"{decision['target_specificity']:.2f}, {decision['n_val_negatives']} negatives)"
        )

    def _say(self, line: str) -> None:
        if self.show:
            getattr(self, "_bars", Bars(None)).print(line)

    def _loader(self) -> DataLoader:
        config = self.config
        self.train_set.set_epoch(self.epoch)
        self.sampler.set_epoch(self.epoch)
        self.sampler.set_skip(self.batches_done * config.batch_size)
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + self.epoch)
        return DataLoader(
            self.train_set,
            batch_size=config.batch_size,
            sampler=self.sampler,
            num_workers=self.workers,
            generator=generator,
            pin_memory=self.ctx.device.type == "cuda",
            persistent_workers=False,
        )

    def _end_step(self) -> bool:
        """Add this step's loss over all ranks to the epoch's; whether any rank asked to stop.

        One all-reduce: every rank must stop at the same step, and every rank then holds the
        epoch's running loss of the whole job, which the resume state saves and restores.
        """
        (loss_sum, count), self.pending_loss = self.pending_loss, (0.0, 0)
        requested = self.flag.requested
        if self.ctx.enabled:
            totals = torch.tensor([float(requested), loss_sum, float(count)],
                                  dtype=torch.float64, device=self.ctx.device)
            torch.distributed.all_reduce(totals)
            requested, loss_sum, count = bool(totals[0] > 0), float(totals[1]), int(totals[2])
        self.loss_sum += loss_sum
        self.loss_count += count
        return requested

    def _train_epoch(self, progress: Bars) -> None:
        config, device = self.config, self.ctx.device
        self.net.train()
        progress.start(
            "train",
            f"epoch {self.epoch + 1}/{config.epochs}",
            total=self.steps_per_epoch,
            completed=self.batches_done,
        )
        batches: Any = self._loader()
        if config.prefetch and self.workers == 0:
            batches = prefetch(batches)
        for batch in batches:
            images = batch["image"].to(device, non_blocking=True, memory_format=self.memory_format)
            masks = batch["mask"].to(device, non_blocking=True)
            self.updating = True
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=self.amp):
                logits = self.net(images)
            loss = self.loss_fn(logits.float(), masks)
            penalty = regularisation(self.model)  # a zoo layer's prior; logged loss: data only
            self.scaler.scale(loss if penalty is None else loss + penalty).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.updating = False
            value = float(loss.detach())
            self.pending_loss = (value * images.shape[0], images.shape[0])
            self.batches_done += 1
            self.step += 1
            self.rng_snapshot = capture_rng()
            lr = self.optimizer.param_groups[0]["lr"]
            self.tb.scalars({"train/loss_step": value, "train/lr": lr}, self.step)
            progress.advance("train", description=f"epoch {self.epoch + 1}/{config.epochs} "
                             f"loss {value:.4f}")
            info = StepInfo(self.epoch, self.batches_done, self.step, value)
            for callback in self.callbacks:
                callback.on_step_end(info)
            if self._end_step():
                raise _StopRequested
        progress.finish("train")

    @torch.no_grad()  # what MONAI's eval_mode, used here before, added to the mode change
    def _validate(self) -> tuple[float, float]:
        """Validation ``(mean Dice, mean loss)`` over every image of every rank."""
        from monai.metrics import DiceMetric

        config, device = self.config, self.ctx.device
        model = self.model
        dist_.broadcast_buffers(self.ctx, model)  # every rank validates rank 0's checkpoint
        metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
        batch_size = config.val_batch_size or config.batch_size
        per_image: list[tuple[int, float]] = []
        loss_sum, position = 0.0, 0
        with eval_mode(model):
            for batch in DataLoader(self.val_set, batch_size=batch_size, shuffle=False,
                                    num_workers=self.workers):
                images = batch["image"].to(device)
                masks = batch["mask"].to(device)
                with torch.autocast(device.type, dtype=torch.float16, enabled=self.amp):
                    logits = model(images)
                logits = logits.float()
                loss_sum += float(self.loss_fn(logits, masks)) * images.shape[0]
                preds = (torch.sigmoid(logits) >= config.threshold).float()
                scores = metric(preds, masks)[:, 0].cpu().tolist()
                for score in scores:
                    per_image.append((self.val_indices[position], float(score)))
                    position += 1
        gathered = dist_.gather(self.ctx, (per_image, loss_sum))
        merged = sorted(item for part, _ in gathered for item in part)
        total_loss = sum(part_loss for _, part_loss in gathered)
        dices = [score for _, score in merged]
        return float(np.mean(dices)), total_loss / max(1, len(dices))

    def _end_epoch(self, seconds: float) -> None:
        config = self.config
        train_loss = self.loss_sum / max(1, self.loss_count)  # already over every rank
        val_dice, val_loss = self._validate()
        improved = self.best is None or val_dice > self.best
        row = {
            "epoch": self.epoch + 1,
            "step": self.step,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_dice": val_dice,
            "lr": self.optimizer.param_groups[0]["lr"],
            "best_val_dice": val_dice if improved else self.best,
            "epoch_seconds": round(seconds, 3),
        }
        # commit the new position in one block, then write files
        self.history.append(row)
        if improved:
            self.best, self.best_epoch, self.bad_epochs = val_dice, self.epoch + 1, 0
        else:
            self.bad_epochs += 1
        self.epoch, self.batches_done = self.epoch + 1, 0
        self.loss_sum, self.loss_count = 0.0, 0
        if self.ctx.is_main:
            self._write_epoch_files(row, improved)
        dist_.barrier(self.ctx)
        self._say(
            f"epoch {row['epoch']}/{config.epochs}  train_loss {train_loss:.4f}  "
            f"val_loss {val_loss:.4f}  val_dice {val_dice:.4f}  lr {row['lr']:.2e}  "
            f"{'(best)' if improved else f'(best {self.best:.4f} @ {self.best_epoch})'}  "
            f"{seconds:.1f}s"
        )
        if self._patience_out():
            self._say(f"early stop: no better val Dice for {self.bad_epochs} epochs")
        for callback in self.callbacks:
            callback.on_epoch_end(row)

    def _write_epoch_files(self, row: dict[str, Any], improved: bool) -> None:
        from polypseg.checkpoint import save_checkpoint

        meta = self._checkpoint_meta(row)
        self._save_state()  # first: the commit point (see the module docstring)
        if improved:
            save_checkpoint(self.ckpt_dir / "best", self.model, meta)
        save_checkpoint(self.ckpt_dir / "last", self.model, meta)
        write_metrics_csv(self.run_dir / "metrics.csv", self.history)
        self.tb.scalars(
            {
                "epoch/train_loss": row["train_loss"],
                "epoch/val_loss": row["val_loss"],
                "epoch/val_dice": row["val_dice"],
                "epoch/lr": row["lr"],
            },
            self.step,
        )

    def _save_interrupted(self) -> None:
        if self.updating:
            self._say(
                "interrupted inside an optimiser step: the resume state of the last finished "
                f"epoch stays in {state_path(self.run_dir)}"
            )
            return
        if self.ctx.is_main:
            self._save_state()
        self._say(
            f"interrupted at epoch {self.epoch + 1}, step {self.step}: resumable state saved to "
            f"{state_path(self.run_dir)}; continue with: polypseg train --out {self.run_dir} "
            "--resume"
        )
