"""A plan against its counterpart plan (``compare_with``): each entry against its counterpart,
and the change of its gain over a baseline, paired over the same test images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from polypseg.bench.plan import PlanError, load_plan
from polypseg.bench.runs import plan_runs
from polypseg.bench.stats import paired_bootstrap, paired_contrast

#: Mean Dice per entry; "there" is the counterpart plan (32 px), "here" this one (64 px). On
#: Kvasir-SEG p4's gain over unet grows from +0.04 to +0.10; on CVC-ClinicDB it stays +0.05.
LEVELS = {"kvasir": {"unet": 0.60, "p4": 0.70, "unet+neg": 0.55, "p4+neg": 0.59},
          "cvc": {"unet": 0.60, "p4": 0.65, "unet+neg": 0.50, "p4+neg": 0.55}}


def _write_plans(root: Path) -> Path:
    (root / "pyproject.toml").write_text("")
    for name in ("a", "b"):
        (root / name).mkdir()
    common = {"epochs": 1, "batch_size": 2, "lr": 1e-3, "seeds": [0, 1, 2], "depth": 2,
              "cross_dataset": True,
              "datasets": {"kvasir": {"data_dir": "a"}, "cvc": {"data_dir": "b"}}}
    there = {"name": "small", "size": 32, "runs": "runs/small", **common,
             "entries": [{"name": "unet+neg", "variant": "unet", "width": 2, "negatives": 0.2},
                         {"name": "p4+neg", "variant": "p4", "width": 1, "negatives": 0.2}]}
    here = {"name": "large", "size": 64, "runs": "runs/large", "baselines": ["unet"], **common,
            "entries": [{"name": "unet", "variant": "unet", "width": 2},
                        {"name": "p4", "variant": "p4", "width": 1}],
            "compare_with": {"plan": "plans/small.yaml", "note": "half the side",
                             "entries": {"unet": "unet+neg", "p4": "p4+neg"}}}
    (root / "plans").mkdir()
    (root / "plans" / "small.yaml").write_text(yaml.safe_dump(there))
    (root / "plans" / "large.yaml").write_text(yaml.safe_dump(here))
    return root / "plans" / "large.yaml"


def test_gain_growth_is_measured_paired_over_the_same_images(tmp_path: Path,
                                                             monkeypatch) -> None:
    from polypseg.bench import collect
    from polypseg.bench.counterpart import compare_plans, counterpart_markdown

    plan = load_plan(_write_plans(tmp_path))
    assert plan.compare_with is not None
    assert plan.compare_with.entries == (("unet", "unet+neg"), ("p4", "p4+neg"))
    images = np.random.default_rng(1).normal(0, 0.1, size=40)  # hard and easy images
    noise = np.random.default_rng(2)

    def fake_dice(spec, evaluation):
        level = LEVELS[spec.dataset][evaluation.entry]
        if evaluation.cross:  # on the other dataset: 0.2 lower, the large models 0.1 less so
            level -= 0.2 - (0.1 if evaluation.entry in ("unet", "p4") else 0.0)
        return {f"img{i}": float(level + images[i] + noise.normal(0, 0.02))
                for i in range(len(images))}

    monkeypatch.setattr(collect, "per_image_dice", fake_dice)
    section = compare_plans(plan, plan_runs(plan))
    assert (section["plan"], section["size"], section["note"]) == ("small", [64, 32],
                                                                   "half the side")
    assert section["plan_file"] == "plans/small.yaml"
    entries = {(r["dataset"], r["entry"]): r for r in section["entries"]}
    assert entries[("kvasir", "p4")]["diff_mean"] == pytest.approx(0.11, abs=0.01)
    assert entries[("kvasir", "p4")]["n_seeds"] == [3, 3]
    assert [(g["entry"], g["baseline"]) for g in section["gains"]] == [("p4", "unet")] * 2
    gains = {g["dataset"]: g for g in section["gains"]}
    assert set(gains) == {"kvasir", "cvc"} and gains["kvasir"]["baseline"] == "unet"
    grows = gains["kvasir"]
    assert grows["here"]["diff_mean"] == pytest.approx(0.10, abs=0.01)
    assert grows["there"]["diff_mean"] == pytest.approx(0.04, abs=0.01)
    assert grows["change"]["diff_mean"] == pytest.approx(0.06, abs=0.01)
    assert grows["change"]["verdict"] == "better"
    assert gains["cvc"]["change"]["verdict"] == "no difference shown"
    assert gains["cvc"]["change"]["ci_low"] < 0 < gains["cvc"]["change"]["ci_high"]
    cross = {(c["dataset"], c["tested_on"], c["entry"]): c for c in section["cross"]}
    assert set(cross) == {(d, o, e) for d, o in (("kvasir", "cvc"), ("cvc", "kvasir"))
                          for e in ("unet", "p4")}
    # p4 on CVC-ClinicDB, trained on Kvasir-SEG: 0.70 - 0.1 here against 0.59 - 0.2 there
    assert cross[("kvasir", "cvc", "p4")]["diff_mean"] == pytest.approx(0.21, abs=0.01)
    assert cross[("kvasir", "cvc", "p4")]["counterpart"] == "p4+neg"
    text = "\n".join(counterpart_markdown({"counterpart": section, "datasets": {}}))
    assert "tested on another dataset" in text
    assert "## Against plan small (32 px)" in text and "**grows**" in text
    assert "no change shown" in text and "| p4 | p4+neg | +0.1" in text


def test_a_contrast_of_two_sides_is_the_paired_bootstrap() -> None:
    rng = np.random.default_rng(0)
    a = [{f"s{i}": float(v) for i, v in enumerate(rng.random(30))} for _ in range(3)]
    b = [{f"s{i}": float(v) for i, v in enumerate(rng.random(30))} for _ in range(2)]
    assert paired_contrast([(1.0, a), (-1.0, b)]) == paired_bootstrap(a, b)
    # a side compared with itself twice over cancels exactly: a zero-width interval at 0
    zero = paired_contrast([(1.0, a), (-1.0, b), (-1.0, a), (1.0, b)])
    assert abs(zero["diff_mean"]) < 1e-12 and zero["n_seeds"] == [3, 2, 3, 2]
    with pytest.raises(ValueError):
        paired_contrast([(1.0, a), (-1.0, [])])


def test_a_counterpart_that_names_unknown_entries_is_a_plan_error(tmp_path: Path) -> None:
    from polypseg.bench.counterpart import compare_plans

    path = _write_plans(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["compare_with"]["entries"] = {"unet": "unet+neg", "p4": "p4+typo"}
    path.write_text(yaml.safe_dump(raw))
    plan = load_plan(path)
    with pytest.raises(PlanError, match="p4\\+typo"):
        compare_plans(plan, plan_runs(plan))
    raw["compare_with"]["entries"] = {"p5": "p4+neg"}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(PlanError, match="p5"):
        load_plan(path)
    raw["compare_with"] = {"plan": "plans/missing.yaml", "entries": {"p4": "p4+neg"}}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(PlanError, match="no such file"):
        load_plan(path)
