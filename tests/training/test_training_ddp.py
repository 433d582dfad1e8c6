"""Data-parallel training: two gloo processes on CPU, through the torchrun environment.

The two ranks are forked from the test process (``torch.multiprocessing``, start method
``fork``) so they skip the slow imports of torch and MONAI; each sets the variables torchrun
would set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and calls the same
``polypseg.training.train`` as ``torchrun --nproc-per-node 2 -m polypseg train``.

Every variant trains, validates and resumes under DDP: the logged validation Dice is that of
the saved checkpoint (``polypseg evaluate``), and a run stopped mid-epoch by a signal to one rank
and resumed logs the losses of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from interrupts import InterruptAt

from polypseg.checkpoint import load_checkpoint, read_meta
from polypseg.evaluation import evaluate_run
from polypseg.training import TrainConfig, train
from polypseg.training.logs import read_metrics_csv
from polypseg.training.models import available_models, build_model
from polypseg.training.state import load_resume_state, state_path
from polypseg.training.synthetic import make_synthetic

#: Two computations of one float32 result (see test_training_resume).
SAME = 1e-6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank_main(
    rank: int, world_size: int, port: int, values: dict[str, Any], interrupt_at: int = 0
) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)  # OpenMP pools do not survive fork; one thread per rank
    _refuse_teardown_with_a_live_wrapper()
    if not interrupt_at:
        train(TrainConfig(**values))
        return
    # Ctrl-C to rank 0 alone after step `interrupt_at`: every rank stops after that step
    callbacks = [InterruptAt(interrupt_at, real_signal=True)] if rank == 0 else []
    try:
        train(TrainConfig(**values), callbacks)
    except KeyboardInterrupt:
        return
    raise AssertionError(f"rank {rank} was not stopped")


def _refuse_teardown_with_a_live_wrapper() -> None:
    """Make this rank fail if its process group is destroyed while a DistributedDataParallel
    wrapper lives: its reducer would free the group with the GIL held, which can deadlock
    (``polypseg.training.distributed.teardown``). A race, so the test checks its condition."""
    import gc

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    destroy = dist.destroy_process_group

    def checked(*args: Any, **kwargs: Any) -> None:
        live = [o for o in gc.get_objects() if isinstance(o, DistributedDataParallel)]
        if live:
            raise AssertionError(f"process group destroyed under {len(live)} live DDP wrapper(s)")
        destroy(*args, **kwargs)

    dist.destroy_process_group = checked  # this forked rank's copy of the module only


def _torchrun(values: dict[str, Any], interrupt_at: int = 0) -> None:
    """Run ``train`` on 2 forked gloo ranks, as ``torchrun --nproc-per-node 2`` would."""
    mp.start_processes(_rank_main, args=(2, _free_port(), values, interrupt_at), nprocs=2,
                       start_method="fork", join=True)


@pytest.mark.skipif(sys.platform != "linux", reason="forked gloo ranks need Linux")
def test_two_process_gloo_run_matches_single_process_structure(
    tiny_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    single = train(tiny_config(out=str(tmp_path / "single")))
    ddp = tmp_path / "ddp"
    _torchrun(dataclasses.asdict(tiny_config(out=str(ddp), batch_size=1)))

    rows_single = read_metrics_csv(single / "metrics.csv")
    rows_ddp = read_metrics_csv(ddp / "metrics.csv")
    assert [list(r) for r in rows_ddp] == [list(r) for r in rows_single]
    assert [r["step"] for r in rows_ddp] == [2, 4]  # 4 images / (2 ranks x 1) = 2 steps/epoch
    for which in ("best", "last"):
        _, meta = load_checkpoint(ddp / "checkpoints" / which)
        assert meta.variant == "p4"
        assert set(meta.to_json()) == set(read_meta(single / "checkpoints" / which).to_json())
    assert load_resume_state(state_path(ddp))["data_order"]["world_size"] == 2
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())
    # rank 1 wrote nothing of its own: one event file, from rank 0
    assert len(list((ddp / "tb").glob("events.out.tfevents.*"))) == 1


@pytest.fixture(scope="module")
def ddp_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 synthetic 32 px pairs: 128 train, 16 validation images in the default split."""
    return make_synthetic(tmp_path_factory.mktemp("ddp") / "polyps", n=160, size=32)


def _checkpoint_val_loss(run: Path, data: Path) -> float:
    """The mean validation loss of ``run``'s best checkpoint, one image per batch."""
    from monai.losses import DiceCELoss

    from polypseg.data import discover
    from polypseg.opened import open_run
    from polypseg.training.datasets import choose_split, eval_dataset, subset_pairs

    loaded = open_run(run, "best", "cpu")
    index = discover(data)
    split = choose_split(index, loaded.split_file).split
    dataset = eval_dataset(subset_pairs(index, split, "val"), loaded.size, loaded.depth)
    loss_fn = DiceCELoss(sigmoid=True)
    with torch.no_grad():
        losses = [float(loss_fn(loaded.model(item["image"][None]), item["mask"][None]))
                  for item in dataset]
    return sum(losses) / len(losses)


@pytest.mark.skipif(sys.platform != "linux", reason="forked gloo ranks need Linux")
@pytest.mark.parametrize("variant", available_models())
def test_every_variant_logs_the_validation_of_its_checkpoint(
    variant: str, ddp_data: Path, tmp_path: Path
) -> None:
    """One short epoch on 2 ranks; the logged val Dice is ``polypseg evaluate``'s of the best
    checkpoint on the val split, and the logged val loss that checkpoint's (the loss moves with
    any change of the batch-norm statistics; after 4 steps the thresholded Dice rarely does).

    Both sides validate one image per batch on one thread, so they apply the same kernels to the
    same data (batches of other sizes could pick other kernels and move a logit that sits at the
    threshold)."""
    build_model(variant, width=2, depth=2)  # bases cached here are shared by the forked ranks
    run = tmp_path / variant
    config = TrainConfig(
        variant=variant, data=str(ddp_data), out=str(run), epochs=1, batch_size=1,
        val_batch_size=1, size=32, width=2, depth=2, limit_train=8, lr=0.01, warmup_epochs=0,
        device="cpu", workers=0, quiet=True,
    )  # 8 images / (2 ranks x 1) = 4 steps
    _torchrun(dataclasses.asdict(config))

    logged = read_metrics_csv(run / "metrics.csv")[-1]
    assert read_meta(run / "checkpoints" / "best").metrics["val_dice"] == logged["val_dice"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = evaluate_run(run, ddp_data, subset="val", batch_size=1, device="cpu",
                              write=False)
        val_loss = _checkpoint_val_loss(run, ddp_data)
    finally:
        torch.set_num_threads(threads)
    assert result["n_images"] == 16
    assert abs(result["summary"]["dice"]["mean"] - logged["val_dice"]) <= SAME, (variant, logged)
    assert logged["val_loss"] == pytest.approx(val_loss, rel=SAME), (variant, val_loss)


@pytest.mark.skipif(sys.platform != "linux", reason="forked gloo ranks need Linux")
def test_ddp_resume_mid_epoch_logs_the_losses_of_an_uninterrupted_run(
    ddp_data: Path, tmp_path: Path
) -> None:
    values = dict(
        variant="p4", data=str(ddp_data), epochs=2, batch_size=2, size=32, width=2, depth=2,
        limit_train=8, device="cpu", workers=0, quiet=True,
    )  # 8 images / (2 ranks x 2) = 2 steps per epoch
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    _torchrun(dict(values, out=str(straight)))
    _torchrun(dict(values, out=str(stopped)), interrupt_at=3)  # mid-epoch 2
    state = load_resume_state(state_path(stopped))
    assert (state["epoch"], state["batches_done"], state["step"]) == (1, 1, 3)
    _torchrun(dict(values, out=str(stopped), resume=True))

    rows_a = read_metrics_csv(straight / "metrics.csv")
    rows_b = read_metrics_csv(stopped / "metrics.csv")
    assert [r["step"] for r in rows_b] == [r["step"] for r in rows_a] == [2, 4]
    for row_a, row_b in zip(rows_a, rows_b, strict=True):
        for key in ("train_loss", "val_loss", "val_dice", "lr"):
            assert row_b[key] == pytest.approx(row_a[key], rel=SAME), (row_a["epoch"], key)
