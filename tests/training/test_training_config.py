"""``polypseg.training.config`` and ``polypseg.training.fields``: the fields' bounds and options,
and configs written before ``model`` was renamed ``variant`` (the committed runs) still load."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import zoo
from polypseg.errors import RunError
from polypseg.training.config import (
    TrainConfig,
    build_config,
    option_flags,
    read_json_config,
    resume_base,
    upgrade_keys,
)
from polypseg.training.fields import Bound, CliOption

ROOT = Path(__file__).resolve().parents[2]
COMMITTED_CONFIGS = sorted((ROOT / "results").rglob("config.json"))


def test_bounds_hold_and_read_as_the_messages_say() -> None:
    assert Bound(low=1).holds(1) and not Bound(low=1).holds(0)
    assert not Bound(low=0, low_open=True).holds(0) and Bound(low=0, low_open=True).holds(1e-9)
    threshold = Bound(low=0, high=1, low_open=True, high_open=True)
    assert threshold.holds(0.5) and not threshold.holds(1) and not threshold.holds(math.nan)
    assert [b.describe() for b in (Bound(low=1), Bound(low=0, low_open=True), threshold,
                                   Bound(low=0.0, high=0.9))] == [
        ">= 1", "> 0", "in (0, 1)", "in [0, 0.9]"]


def test_option_flags_come_from_the_fields() -> None:
    assert option_flags("variant") == ("--model", None)
    assert option_flags("rot_aug") == ("--rot-aug", "--no-rot-aug")
    assert CliOption(("--resume",), "").switch_only
    assert not CliOption(("--amp/--no-amp",), "").switch_only
    with pytest.raises(KeyError, match="threshold"):
        option_flags("threshold")


def test_validate_checks_every_declared_bound() -> None:
    with pytest.raises(RunError) as caught:
        TrainConfig(variant="p4", data="d", threshold=1.0, val_batch_size=0,
                    min_lr_ratio=1.5).validate()
    message = str(caught.value)
    for part in ("'threshold' must be in (0, 1), got 1.0", "'val_batch_size' must be >= 1",
                 "'min_lr_ratio' must be in [0, 1], got 1.5"):
        assert part in message


def test_options_override_by_field_name_and_unknown_names_are_refused(tmp_path: Path) -> None:
    config = build_config(None, {"variant": "p4", "size": 64, "width": None},
                          base={"model": "unet", "width": 3})
    assert (config.variant, config.size, config.width) == ("p4", 64, 3)
    with pytest.raises(RunError, match="unknown key 'sise'"):
        build_config(None, {"sise": 64})
    with pytest.raises(RunError, match="'size' must be int"):
        build_config(None, {"size": "64"})


def test_both_names_of_one_field_are_refused() -> None:
    with pytest.raises(RunError, match="'model' is the old name of 'variant'"):
        upgrade_keys({"model": "p4", "variant": "unet"}, "config file x.yaml")
    assert upgrade_keys({"model": "p4", "size": 32}, "x") == {"variant": "p4", "size": 32}


@pytest.mark.skipif(not COMMITTED_CONFIGS, reason="no committed run folders under results/")
@pytest.mark.parametrize("path", COMMITTED_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_run_configs_load(path: Path) -> None:
    recorded = json.loads(path.read_text(encoding="utf-8"))
    config = TrainConfig(**read_json_config(path)).validate()
    assert config.variant == recorded.get("variant", recorded.get("model"))
    assert config.variant in zoo.available()
    base = resume_base(path.parent)  # what --resume of that folder starts from
    assert base["variant"] == config.variant and base["out"] == str(path.parent)
    assert not {"model", "resume", "quiet", "progress", "split_file"} & set(base)
    assert build_config(None, {"epochs": 99}, base=base).variant == config.variant


def test_resume_base_of_a_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(RunError, match=r"cannot resume: .*config\.json not found"):
        resume_base(tmp_path)
