"""Pieces of training: schedule, RNG state, sampler, YAML configuration."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from polypseg.errors import RunError
from polypseg.training import build_config
from polypseg.training.config import TrainConfig, read_yaml
from polypseg.training.distributed import auto_workers
from polypseg.training.sampling import ResumableSampler, item_seed
from polypseg.training.schedule import warmup_cosine, warmup_cosine_factor
from polypseg.training.state import (
    capture_rng,
    load_resume_state,
    restore_rng,
    save_resume_state,
)


def test_warmup_then_cosine() -> None:
    factors = [warmup_cosine_factor(s, warmup_steps=4, total_steps=20, min_ratio=0.1)
               for s in range(25)]
    assert factors[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert factors[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[4:]))
    assert factors[20] == pytest.approx(0.1) and factors[24] == pytest.approx(0.1)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, 4, 20, 0.1)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.4)


def test_rng_state_round_trip_through_weights_only(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    saved = capture_rng()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    save_resume_state(tmp_path / "s.pt", {"rng": saved})
    restore_rng(load_resume_state(tmp_path / "s.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_sampler_order_depends_on_seed_and_epoch_and_skips() -> None:
    data = list(range(10))
    sampler = ResumableSampler(data, num_replicas=1, rank=0, seed=5)
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(first) == data and first != second
    sampler.set_epoch(0)
    sampler.set_skip(4)
    assert list(sampler) == first[4:] and len(sampler) == 6
    shards = [list(ResumableSampler(data, 2, r, seed=5)) for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == data
    assert item_seed(0, 1, 2) == item_seed(0, 1, 2) != item_seed(0, 2, 2)


def test_yaml_config_and_command_line_precedence(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: p4\nbatch-size: 4\nlr: 1\nmodel_options: {rotation_pool: mean}\n")
    config = build_config(path, {"lr": 0.5, "epochs": None})
    assert (config.variant, config.batch_size, config.lr, config.epochs) == ("p4", 4, 0.5, 50)
    assert config.model_options == {"rotation_pool": "mean"}
    assert isinstance(read_yaml(path)["lr"], float)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: [p4\n", "not valid YAML at line"),
        ("- a\n- b\n", "must hold a mapping"),
        ("modle: p4\n", "unknown key 'modle'"),
        ("epochs: many\n", "'epochs' must be int"),
        ("amp: 1\n", "'amp' must be bool"),
    ],
)
def test_bad_yaml_configs(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RunError, match=message):
        build_config(path)


def test_missing_config_and_invalid_values(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="config file not found"):
        build_config(tmp_path / "nope.yaml")
    with pytest.raises(RunError, match="divisible by 2\\*\\*depth"):
        TrainConfig(variant="p4", data="d", size=30, depth=2).validate()
    with pytest.raises(RunError, match="'size' 100 is not divisible by 2\\*\\*depth = 16"):
        TrainConfig(variant="p4", data="d", size=100).validate()  # the zoo's default depth, 4
    with pytest.raises(RunError, match="'epochs' must be >= 1"):
        TrainConfig(variant="p4", data="d", epochs=0).validate()
    with pytest.raises(RunError, match="'model' is required"):
        TrainConfig(data="d").validate()
    with pytest.raises(RunError, match="'workers' must be >= 0"):
        TrainConfig(variant="p4", data="d", workers=-1).validate()
    with pytest.raises(RunError, match="'min_epochs' must be >= 0"):
        TrainConfig(variant="p4", data="d", min_epochs=-1).validate()
    assert TrainConfig(variant="p4", data="d").validate().workers is None  # automatic


def test_automatic_workers() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert auto_workers(cpu, cpus=64, local_world_size=1) == 0  # they would share the cores
    assert auto_workers(cuda, cpus=16, local_world_size=1) == 4
    assert auto_workers(cuda, cpus=16, local_world_size=4) == 3  # 4 CPUs per process
    assert auto_workers(cuda, cpus=2, local_world_size=1) == 1
    assert auto_workers(cuda, cpus=2, local_world_size=2) == 0
    assert auto_workers(cuda, cpus=1, local_world_size=1) == 0


def test_resume_on_a_host_with_fewer_gpus_restores_those_present(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    saved = capture_rng()
    saved["cuda"] = [torch.full((16,), g, dtype=torch.uint8) for g in range(4)]  # 4 GPUs
    restored: list[tuple[int, int]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(
        torch.cuda, "set_rng_state", lambda state, device: restored.append((int(state[0]), device))
    )
    restore_rng(saved)
    assert restored == [(0, 0), (1, 1)]


def test_repeated_dataset_lists_every_item_repeats_times() -> None:
    from polypseg.training.sampling import RepeatedDataset

    class Items:
        transform = "t"

        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int) -> int:
            return 10 + i

    repeated = RepeatedDataset(Items(), 4)
    assert len(repeated) == 12 and repeated.transform == "t"
    assert sorted(repeated[i] for i in range(12)) == sorted([10, 11, 12] * 4)
    with pytest.raises(IndexError):
        repeated[12]
    with pytest.raises(ValueError, match="repeats"):
        RepeatedDataset(Items(), 0)


def test_a_run_recorded_before_the_head_norm_resumes_without_one(tmp_path) -> None:
    """Resuming builds the model the run was recorded with: options added to the zoo since
    (the head norm) take their old value, and the identity check compares as rebuilt."""
    from polypseg.errors import RunError
    from polypseg.training.models import recorded_options_of
    from polypseg.training.state import check_identity

    old = {"in_channels": 3, "out_channels": 1, "width": 2, "depth": 2}
    assert recorded_options_of(old, {}) == {"head_norm": False}
    assert recorded_options_of({**old, "head_norm": True}, {}) == {"head_norm": True}
    assert recorded_options_of(old, {"head_norm": True}) == {"head_norm": True}  # given wins
    check_identity({"model": old, "size": 32}, {"model": {**old, "head_norm": False},
                                                "size": 32}, tmp_path)
    with pytest.raises(RunError, match="head_norm"):
        check_identity({"model": old, "size": 32}, {"model": {**old, "head_norm": True},
                                                    "size": 32}, tmp_path)
