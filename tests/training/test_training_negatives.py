"""Negatives in training: off by default (the batches of before), seeded, resumable, effective,
and the frame-level decision chosen at the end of a run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from interrupts import InterruptAt
from safetensors.torch import load_file

from polypseg.data import SegmentationDataset, build_transforms
from polypseg.errors import RunError
from polypseg.training import TrainConfig, train
from polypseg.training import distributed as dist_
from polypseg.training.interrupt import StopFlag
from polypseg.training.loop import _Trainer
from polypseg.training.sampling import ResumableSampler, SeededAugmentation

#: Relative tolerance of "the same tensor" (float rounding of one machine's kernels).
SAME = 1e-6


def _trainer(config: TrainConfig) -> _Trainer:
    with StopFlag() as flag:
        return _Trainer(config, dist_.setup("cpu"), [], flag)


def _batches(loader: Any) -> list[dict[str, Any]]:
    return [{"image": b["image"].clone(), "mask": b["mask"].clone(), "stem": list(b["stem"])}
            for b in loader]


def _reference_loader(trainer: _Trainer, seed: int, epoch: int, batch_size: int) -> Any:
    """The data pipeline as it was before negatives existed, built here from its parts."""
    spec = trainer.input_spec
    dataset = SeededAugmentation(
        SegmentationDataset(trainer.train_pairs,
                            build_transforms(spec.size, train=True, depth=spec.depth)), seed)
    dataset.set_epoch(epoch)
    sampler = ResumableSampler(dataset, 1, 0, seed)
    sampler.set_epoch(epoch)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                                       generator=generator)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=SAME, atol=SAME))


def test_without_negatives_the_batches_are_those_of_before(
    tiny_config: Callable[..., TrainConfig],
) -> None:
    config = tiny_config(variant="unet", seed=3, limit_train=6)
    assert config.negatives == 0  # the default
    trainer = _trainer(config)
    assert isinstance(trainer.train_set.dataset, SegmentationDataset)  # nothing wrapped
    assert trainer.steps_per_epoch == 3
    for epoch in (0, 1):
        trainer.epoch = epoch
        ours = _batches(trainer._loader())
        before = _batches(_reference_loader(trainer, 3, epoch, config.batch_size))
        assert [b["stem"] for b in ours] == [b["stem"] for b in before]
        for a, b in zip(ours, before, strict=True):
            assert _close(a["image"], b["image"]) and _close(a["mask"], b["mask"])


def test_negatives_join_each_epoch_at_their_share_and_leave_the_positives_alone(
    tiny_config: Callable[..., TrainConfig],
) -> None:
    config = tiny_config(variant="unet", seed=3, limit_train=6, negatives=0.25)
    trainer = _trainer(config)
    assert trainer.n_negatives == 2 and len(trainer.train_set) == 8
    assert trainer.steps_per_epoch == 4
    reference = _reference_loader(trainer, 3, 1, 1).dataset
    trainer.train_set.set_epoch(1)
    for i in range(6):  # a positive is the item it was, augmentation included
        ours, before = trainer.train_set[i], reference[i]
        assert ours["stem"] == before["stem"] and _close(ours["image"], before["image"])
    trainer.epoch = 1
    stems = [s for b in _batches(trainer._loader()) for s in b["stem"]]
    assert sum(s.startswith("neg:") for s in stems) == 2 and len(stems) == 8
    negatives = [trainer.train_set[i] for i in (6, 7)]
    assert all(not n["mask"].any() for n in negatives)
    trainer.train_set.set_epoch(2)  # drawn afresh each epoch
    assert not _close(trainer.train_set[6]["image"], negatives[0]["image"])


def test_a_run_with_negatives_resumes_exactly(
    tiny_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    def weights(run: Path) -> dict[str, torch.Tensor]:
        return load_file(str(run / "checkpoints" / "last.safetensors"))

    settings = {"variant": "unet", "negatives": 0.5, "limit_train": 2}  # 2 + 2 items, 2 steps
    straight = train(tiny_config(out=str(tmp_path / "straight"), **settings))
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(out=str(tmp_path / "cut"), **settings), [InterruptAt(step=3)])
    resumed = train(tiny_config(out=str(tmp_path / "cut"), resume=True, **settings))
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        if a[key].is_floating_point():
            scale = float(a[key].abs().max().clamp_min(1e-12))
            assert float((a[key] - b[key]).abs().max()) / scale <= SAME, key
        else:
            assert torch.equal(a[key], b[key]), key
    with pytest.raises(RunError, match="negatives"):  # another share is another run
        train(tiny_config(out=str(tmp_path / "cut"), resume=True, epochs=3,
                          **{**settings, "negatives": 0.25}))


def test_training_on_negatives_alone_lowers_the_foreground_predicted_on_them(
    synthetic_data: Path,
) -> None:
    import zoo
    from polypseg.data import discover
    from polypseg.data.negatives import NegativeSource, empty_item, fixed_negatives
    from polypseg.negatives_eval import predict_negatives
    from polypseg.training.losses import DiceCELoss

    torch.manual_seed(0)
    pairs = discover(synthetic_data).pairs
    model = zoo.create("unet", in_channels=3, out_channels=1, width=4, depth=2)
    held_out, _ = fixed_negatives(pairs[16:])

    def foreground() -> float:
        rows = predict_negatives(model, held_out, 32, 2, 0.5)
        return float(np.mean([r["pred_fraction"] for r in rows]))

    before = foreground()
    source = NegativeSource(pairs[:16])
    transform = build_transforms(32, train=True, depth=2, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss_fn = DiceCELoss()
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(15):
        items = [empty_item(source.draw(rng)[0], transform, "neg") for _ in range(4)]
        images = torch.stack([item["image"] for item in items])
        masks = torch.stack([item["mask"] for item in items])
        optimizer.zero_grad()
        loss_fn(model(images), masks).backward()
        optimizer.step()
    after = foreground()
    assert before > 0.05  # an untrained model marks foreground on them
    assert after < 0.5 * before, (before, after)


def test_the_best_checkpoint_gets_its_decision_chosen_on_validation(
    tiny_config: Callable[..., TrainConfig],
) -> None:
    run = train(tiny_config(variant="unet", negatives=0.2, target_specificity=0.9))
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    decision = best["decision"]
    assert decision["target_specificity"] == 0.9
    assert decision["min_area_fraction"] >= 0.005
    if decision["source"] == "validation":
        assert decision["val_specificity"] >= 0.9
    assert best["args"]["negatives"] == 0.2


def test_bad_negatives_settings_are_one_clear_error(
    tiny_config: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    with pytest.raises(RunError, match="'negatives' must be in"):
        tiny_config(negatives=0.95).validate()
    with pytest.raises(RunError, match="needs 'negatives'"):
        tiny_config(negatives_dir=str(tmp_path)).validate()
    from polypseg.errors import DataError

    with pytest.raises(DataError, match="negatives folder not found"):
        train(tiny_config(negatives=0.2, negatives_dir=str(tmp_path / "missing")))
