"""The fast paths of a training run keep its numbers: channels-last batches, prefetching,
the lagged loss read-back, compilation; and the allocator setting."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from polypseg.training import TrainConfig, train
from polypseg.training import loop as loop_module
from polypseg.training.logs import read_metrics_csv
from polypseg.training.prefetch import prefetch


def _losses(run) -> list[tuple[float, float, float]]:
    return [(r["train_loss"], r["val_loss"], r["val_dice"])
            for r in read_metrics_csv(run / "metrics.csv")]


def _close(a, b, tol: float) -> bool:
    return all(abs(x - y) <= tol * max(1.0, abs(y)) for row_a, row_b in zip(a, b, strict=True)
               for x, y in zip(row_a, row_b, strict=True))


@pytest.mark.parametrize("model", ["p4", "steerable"])
def test_channels_last_and_prefetch_train_the_same_run(
    tiny_config: Callable[..., TrainConfig], tmp_path, model: str
) -> None:
    """The reference path (NCHW batches, loading between steps) and the fast one agree on
    every epoch's losses and Dice to float32 rounding (2 epochs x 2 Adam steps): 3e-4 relative,
    since Adam divides each step by the gradient's running RMS, so rounding in small gradients
    moves weights by up to a fraction of the learning rate (the steerable model with the head
    norm: 1.3e-4 seen on one machine)."""
    reference = train(tiny_config(variant=model, out=str(tmp_path / "ref"), channels_last=False,
                                  prefetch=False))
    fast = train(tiny_config(variant=model, out=str(tmp_path / "fast"), channels_last=True,
                             prefetch=True))
    fast_rows, ref_rows = _losses(fast), _losses(reference)
    assert _close([r[:2] for r in fast_rows], [r[:2] for r in ref_rows], 3e-4)
    # Dice counts pixels at the 0.5 threshold, and an untrained model's logits sit around 0
    # (the head norm centres them): rounding flips a few of the 2 x 32 x 32 pixels
    assert _close([r[2:] for r in fast_rows], [r[2:] for r in ref_rows], 5e-3)


def test_compiled_model_trains(
    tiny_config: Callable[..., TrainConfig], tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--compile wraps the model (dynamo's eager backend here: inductor's C++ build takes
    minutes on CPU) and the run saves the same checkpoints as an eager run."""
    monkeypatch.setattr(loop_module, "compiled",
                        lambda model, enabled: torch.compile(model, backend="eager")
                        if enabled else model)
    eager = train(tiny_config(out=str(tmp_path / "eager"), epochs=1))
    compiled = train(tiny_config(out=str(tmp_path / "compiled"), epochs=1, compile=True))
    assert _close(_losses(compiled), _losses(eager), 1e-4)


def test_prefetch_keeps_order_and_raises_where_the_loader_failed() -> None:
    assert list(prefetch(iter(range(10)), depth=3)) == list(range(10))

    def broken():
        yield 1
        yield 2
        raise OSError("unreadable image")

    seen = []
    with pytest.raises(OSError, match="unreadable image"):
        for item in prefetch(broken()):
            seen.append(item)
    assert seen == [1, 2]


def test_prefetch_stops_its_thread_when_the_consumer_stops() -> None:
    import threading

    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    items = prefetch(endless(), depth=2)
    assert next(items) == 0
    items.close()
    assert not any(t.name == "polypseg-prefetch" and t.is_alive() for t in threading.enumerate())
    assert len(produced) <= 4  # at most depth ahead (plus the one being put)
    with pytest.raises(ValueError, match="depth"):
        next(prefetch([], depth=0))



def test_allocator_is_tuned_once_and_leaves_user_settings_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from polypseg.training import performance

    monkeypatch.setattr(performance, "_TUNED", [])
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert performance.tune_allocator() is False  # the user's setting wins
    monkeypatch.setattr(performance, "_TUNED", [])
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    first = performance.tune_allocator()
    assert performance.tune_allocator() is first  # once per process
