"""zoo's factory: names, options, defaults, describe (params, MACs) and match_params."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
import torch
from equivariance import missing_reason, require_variant

import zoo

F32 = torch.float32


def test_available_names_in_table_order() -> None:
    names = zoo.available()
    expected = ["unet", "p4", "p4m", "se2n12", "steerable", "steerable-flip"]
    assert names[: len(expected)] == expected


def test_unknown_name_lists_the_variants() -> None:
    with pytest.raises(ValueError, match="unknown model variant 'p5'") as err:
        zoo.create("p5")
    for name in zoo.available():
        assert name in str(err.value)


def test_bad_options_are_value_errors() -> None:
    with pytest.raises(ValueError, match="bad options for variant 'p4'"):
        zoo.create("p4", width=1, depth=1, colour="blue")
    with pytest.raises(ValueError, match="'bilinear' or 'nearest'"):
        zoo.create("p4", width=1, depth=1, upsample="bicubic")


def test_options_reach_family_and_skeleton() -> None:
    model = zoo.create("p4m", width=1, depth=1, kernel_size=5, upsample="nearest",
                       rotation_pool="mean")  # fmt: skip
    assert model.encoder[0][0][0].kernel_size == 5
    assert model.upsample.mode == "nearest" and model.pool.mode == "mean"
    assert model.config["kernel_size"] == 5
    rebuilt = zoo.from_config(json.loads(json.dumps(model.config)))
    assert rebuilt.config == model.config and rebuilt.pool.mode == "mean"


def test_default_sizes_reproduce_the_talk() -> None:
    # talk: plain U-Net 1,964,029 parameters, p4 U-Net 1,965,625
    unet, p4 = zoo.create("unet"), zoo.create("p4")
    assert (unet.width, unet.depth, p4.width) == (16, 4, 8)
    # the talk's counts have no head norm: 2 * 16 (unet) and 2 * 8 (p4) parameters fewer
    assert zoo.describe(unet)["params"] == 1_964_129
    assert zoo.describe(p4)["params"] == 1_962_417
    assert zoo.describe(zoo.create("unet", head_norm=False))["params"] == 1_964_097
    assert zoo.describe(zoo.create("p4", head_norm=False))["params"] == 1_962_401
    assert abs(1_964_097 / 1_964_029 - 1) < 1e-3 and abs(1_962_401 / 1_965_625 - 1) < 2e-3


@pytest.mark.parametrize("name", zoo.available())
def test_describe_counts_every_parameter(tiny_model, name) -> None:
    model = tiny_model(name, 0, F32).train()
    info = zoo.describe(model, size=(32, 48))
    assert info["params"] == sum(p.numel() for p in model.parameters())
    assert info["variant"] == name and info["group_size"] == model.group_size
    assert info["convs"] == 4 * 2 + 2 + 1  # 2 per stage, 2 stages up, the head (depth 2)
    assert model.training  # describe leaves the model as it found it
    bigger = zoo.describe(model, size=(64, 96))
    assert bigger["macs"] == 4 * info["macs"]


def _hand_macs(group_size: int, size: int = 8) -> int:
    """MACs of create(name, width=2, depth=1) on one 3 x size x size image, by hand."""
    n, hw = group_size, size * size
    full = 3 * 2 * n * 9 + (2 * n) * (2 * n) * 9  # lift 3->2 fields, conv 2->2 at full size
    half = ((2 * n) * (4 * n) * 9 + (4 * n) * (4 * n) * 9) // 4  # 2->4, 4->4 at a quarter
    up = (6 * n) * (2 * n) * 9 + (2 * n) * (2 * n) * 9  # decoder 6->2, 2->2 fields at full size
    return (full + half + up) * hw + 2 * 1 * hw  # + the 1x1 head 2 -> 1


@pytest.mark.parametrize("name,group_size", [("unet", 1), ("p4", 4), ("p4m", 8)])
def test_macs_match_a_hand_computation(name, group_size) -> None:
    info = zoo.describe(zoo.create(name, width=2, depth=1), size=(8, 8))
    assert info["macs"] == _hand_macs(group_size)
    assert _hand_macs(1) == 18_560  # 3456 + 2304 + (1152 + 2304) + 6912 + 2304 + 128


def test_params_match_a_hand_computation() -> None:
    p4 = zoo.create("p4", width=2, depth=1)
    convs = 2 * 3 * 9 + (2 * 2 + 4 * 2 + 4 * 4 + 2 * 6 + 2 * 2) * 4 * 9  # lift + group convs
    norms = 2 * (2 + 2 + 4 + 4 + 2 + 2)  # weight and bias per field
    head_norm = 2 * 2  # weight and bias per invariant channel before the head
    assert zoo.describe(p4)["params"] == convs + norms + head_norm + 2 + 1  # + head's own


def _params(name: str, width: int, **kwargs) -> int:
    """Parameters of the model itself, built at ``width`` (not from the fitted quadratic)."""
    return zoo.count_parameters(zoo.create(name, width=width, **kwargs))


def test_match_params_hits_the_talks_counts() -> None:
    assert zoo.match_params("p4", 1_964_029) == 8
    if missing_reason("se2n12") is None:  # talk: SE(2,12) U-Net 16,493,089 parameters
        width = zoo.match_params("se2n12", 16_493_089)
        assert width == 8 and abs(_params("se2n12", 8) / 16_493_089 - 1) < 0.01


@pytest.mark.parametrize("name", zoo.available())
def test_match_params_picks_the_closest_width(name) -> None:
    require_variant(name)
    target = _params("unet", 16, depth=2)
    width = zoo.match_params(name, target, depth=2)
    counts = {w: _params(name, w, depth=2) for w in (width - 1, width, width + 1) if w}
    assert min(counts, key=lambda w: abs(counts[w] - target)) == width
    if name in ("unet", "p4"):
        assert abs(counts[width] / target - 1) < 0.03


def test_match_params_refuses_a_width() -> None:
    with pytest.raises(ValueError, match="chooses the width"):
        zoo.match_params("p4", 1000, width=3)


def test_counting_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(3)
    expected = torch.rand(1)
    torch.manual_seed(3)
    zoo.match_params("p4", 10_000, depth=2)
    zoo.describe_variant("p4m", width=9, depth=2)
    assert torch.equal(torch.rand(1), expected)


def test_count_parameters_counts_every_or_every_trainable_parameter() -> None:
    model = zoo.create("p4", width=1, depth=1)
    total = sum(p.numel() for p in model.parameters())
    assert zoo.count_parameters(model) == zoo.count_parameters(model, trainable_only=True) == total
    model.head.weight.requires_grad_(False)
    frozen = model.head.weight.numel()
    assert zoo.count_parameters(model, trainable_only=True) == total - frozen


def test_zoo_never_imports_polypseg_and_only_steerable_imports_e2cnn() -> None:
    zoo_dir = Path(zoo.__file__).parent
    for path in sorted(zoo_dir.glob("*.py")):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
        assert "polypseg" not in imported, path.name
        if path.name != "steerable.py":
            assert "e2cnn" not in imported, path.name


def test_a_missing_e2cnn_breaks_only_the_steerable_variants(monkeypatch) -> None:
    for module in [m for m in sys.modules if m.split(".")[0] == "e2cnn"] + ["e2cnn"]:
        monkeypatch.setitem(sys.modules, module, None)  # "import e2cnn" now raises ImportError
    monkeypatch.delitem(sys.modules, "zoo.steerable", raising=False)  # re-imported, and fails
    for name in ("unet", "p4", "p4m", "se2n12"):
        if missing_reason(name) is None:
            zoo.create(name, width=1, depth=1)
    for name in ("steerable", "steerable-flip"):
        with pytest.raises(ImportError):
            zoo.create(name, width=1, depth=1)


def test_cli_models_prints_every_variant(capsys, monkeypatch) -> None:
    from polypseg.cli import main

    monkeypatch.setenv("COLUMNS", "200")
    assert main(["models", "--width", "1", "--depth", "1", "--size", "16"]) == 0
    out = capsys.readouterr().out
    for name in zoo.available():
        line = next(line for line in out.splitlines() if f" {name} " in line)
        if missing_reason(name) is None:
            params = zoo.describe(zoo.create(name, width=1, depth=1))["params"]
            assert f"{params:,}" in line, line
    assert main(["models", "--size", "100"]) == 2
    assert "not divisible by 2**depth = 16" in capsys.readouterr().err
    assert main(["models", "--depth", "1", "--size", "16", "--match-params", "nope"]) == 2
    assert "unknown model variant 'nope'" in capsys.readouterr().err
