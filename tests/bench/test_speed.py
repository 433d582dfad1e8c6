"""The speed benchmark on tiny models: side-by-side ratios, export parity, memory probe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polypseg.bench.memprobe import probe
from polypseg.bench.speed import match_monai, run_speed, write_speed
from zoo import count_parameters


def test_monai_unet_is_parameter_matched() -> None:
    from polypseg.bench.speed import build_from_spec

    spec = match_monai(2_000_000)
    params = count_parameters(build_from_spec(spec))
    assert abs(params - 2_000_000) / 2_000_000 < 0.2
    assert spec["channels"][1] == 2 * spec["channels"][0]


def test_run_speed_tiny(tmp_path: Path) -> None:
    doc = run_speed(device="cpu", size=32, batch_size=1, repeats=2, warmup=0,
                    target_params=3000, variants=["unet", "p4"], depth=2, memory=False)
    names = [m["name"] for m in doc["models"]]
    assert names == ["monai-unet", "unet", "p4"]
    base = doc["models"][0]
    assert base["train_time_ratio"] == pytest.approx(1.0)
    assert base["infer_time_ratio"] == pytest.approx(1.0)
    for row in doc["models"]:
        assert row["train_images_per_s"] > 0 and row["infer_images_per_s"] > 0
        assert len(row["train_seconds"]) == 2  # every repeat kept
    assert [r["name"] for r in doc["exported"]] == ["unet", "p4"]
    assert all(r["max_abs_diff"] < 1e-4 for r in doc["exported"])
    assert doc["device_name"]
    json_path, md_path = write_speed(doc, tmp_path, "speed-test")
    assert json.loads(json_path.read_text())["models"][2]["name"] == "p4"
    text = md_path.read_text()
    assert "| monai-unet |" in text and "1.00x" in text and "## Exported" in text


@pytest.mark.parametrize("training", [True, False])
def test_timing_leaves_each_model_in_its_own_mode(training: bool) -> None:
    """Training steps run in train mode and inference in eval mode, but the models come back
    in the mode they had (the timing borrows them)."""
    import torch

    from polypseg.bench.speed import _time_cases, build_cases, compare_export

    cases = build_cases(["unet", "p4"], 3000, 32, 2)
    seen: dict[str, list[bool]] = {}
    for case in cases:
        case.model.train(training)
        case.model.register_forward_pre_hook(
            lambda m, _args, name=case.name: seen.setdefault(name, []).append(m.training)
        )
    x, y = torch.randn(2, 3, 32, 32), torch.rand(2, 1, 32, 32).round()
    _time_cases(cases, x, y, torch.device("cpu"), repeats=1, warmup=0, say=lambda _m: None)
    assert all(seen[case.name] == [True, False] for case in cases)
    compare_export(cases, x, torch.device("cpu"), repeats=1, warmup=0)
    assert all(m.training is training for case in cases for m in case.model.modules())


def test_memory_probe_reports_a_rise() -> None:
    spec = {"kind": "zoo", "variant": "unet", "width": 4, "depth": 2}
    result = probe(spec, batch=2, size=32, threads=1)
    assert result["train"] >= 0 and result["infer"] >= 0
    assert isinstance(result["method"], str)



def test_speed_keeps_torchs_tf32_switches() -> None:
    """bench speed measures what training runs: it leaves the TF32 switches alone."""
    import torch

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    doc = run_speed(device="cpu", size=32, batch_size=2, repeats=1, warmup=0,
                    target_params=2000, variants=["unet"], depth=1, memory=False, export=False)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    assert doc["tf32"]["cudnn"] == before[1] and doc["tf32"]["cuda_matmul"] == before[0]


def test_each_model_is_probed_alone_in_a_subprocess() -> None:
    from polypseg.bench.speed import isolated_peaks

    spec = {"kind": "zoo", "variant": "unet", "width": 2, "depth": 1}
    peaks = isolated_peaks(spec, batch=2, size=16, threads=1)
    assert peaks["train"] >= 0 and peaks["infer"] >= 0 and peaks["method"]


@pytest.mark.parametrize("training", [True, False])
def test_timing_the_export_leaves_each_model_in_its_mode(training: bool) -> None:
    import torch

    from polypseg.bench.speed import ModelCase, build_from_spec, compare_export

    spec = {"kind": "zoo", "variant": "p4", "width": 2, "depth": 1}
    model = build_from_spec(spec).train(training)
    case = ModelCase("p4", spec, model, count_parameters(model))
    rows = compare_export([case], torch.randn(1, 3, 16, 16), torch.device("cpu"), 1, 0)
    assert [r["name"] for r in rows] == ["p4"] and rows[0]["max_abs_diff"] < 1e-4
    assert model.training is training
