"""Scarce-labels plans: ``train_fractions`` turns a dataset into one plan dataset per fraction,
each trained on a nested subset with the whole split's optimiser steps per epoch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polypseg.bench.plan import PlanError, parse_plan
from polypseg.bench.runs import plan_runs
from polypseg.data import load_split

ROOT = Path(__file__).resolve().parents[2]

VARIANTS = {"unet", "p4"}
FRACTIONS = [0.1, 0.25, 0.5, 1.0]


def _raw(data: dict, **changes: object) -> dict:
    raw = {
        "name": "t", "size": 32, "epochs": 3, "batch_size": 2, "lr": 1e-3, "seeds": [0, 1],
        "cross_dataset": True, "datasets": data,
        "entries": [{"name": "unet", "variant": "unet", "width": 2},
                    {"name": "p4", "variant": "p4", "width": 1}],
    }
    raw.update(changes)
    return raw


def _plan(tmp_path: Path, fractions: object = FRACTIONS, **changes: object):
    for name in ("a", "b"):
        (tmp_path / name).mkdir(exist_ok=True)
    data = {"kvasir": {"data_dir": "a", "train_fractions": fractions}, "cvc": {"data_dir": "b"}}
    return parse_plan(_raw(data, **changes), tmp_path, variants=VARIANTS)


def test_each_fraction_is_a_dataset_of_the_plan(tmp_path: Path) -> None:
    plan = _plan(tmp_path, [0.5, 0.1, 1, 0.25])
    keys = [d.key for d in plan.datasets]
    assert keys == ["kvasir-10", "kvasir-25", "kvasir-50", "kvasir", "cvc"]
    by_key = {d.key: d for d in plan.datasets}
    assert [by_key[k].epoch_repeats for k in keys] == [10, 4, 2, 1, 1]
    assert {d.base_key for d in plan.datasets} == {"kvasir", "cvc"}
    assert by_key["kvasir-25"].label == "Kvasir-SEG, 25% of the training split"


@pytest.mark.parametrize(("fractions", "message"), [
    ([0.1, 0.5], "must include 1"),
    ([0.3, 1], "not 1/N"),
    ([1.5], "not 1/N"),
    ([0, 1], "positive number"),
    ("half", "non-empty list"),
])
def test_bad_fractions_are_plan_errors(tmp_path: Path, fractions, message) -> None:
    with pytest.raises(PlanError, match=message):
        _plan(tmp_path, fractions)


def test_runs_of_a_fraction_take_the_whole_splits_steps_and_test_across_whole(
    tmp_path: Path,
) -> None:
    plan = _plan(tmp_path)
    runs = plan_runs(plan, {"unet": {"width": 2}, "p4": {"width": 1}})
    assert len(runs) == 2 * 5 * 2  # entries x plan datasets x seeds
    small = next(r for r in runs if r.dataset == "kvasir-10")
    assert small.train_fraction == 0.1 and small.train["epoch_repeats"] == 10
    assert small.train["epochs"] == 3 and small.split_file.endswith("kvasir-10.json")
    whole = next(r for r in runs if r.dataset == "kvasir")
    assert whole.train_fraction == 1 and "epoch_repeats" not in whole.train
    # cross-dataset tests go to the other dataset's whole split, never to a fraction of one
    assert set(small.others) == {"cvc"} and set(whole.others) == {"cvc"}
    cvc = next(r for r in runs if r.dataset == "cvc")
    assert set(cvc.others) == {"kvasir"}
    assert small.others["cvc"]["split_file"].endswith("cvc.json")


def test_prepared_subsets_are_nested_and_keep_validation_and_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fraction splits are cut from the whole split's file: nested, seeded, val/test the
    same (the data folders are faked: only the stems matter here)."""
    from polypseg.bench import runs as runs_module
    from polypseg.data.splits import Split

    plan = _plan(tmp_path)
    stems = [f"img{i:03d}" for i in range(40)]
    fake = Split(dataset="kvasir-seg", rule="test", seed=0,
                 sets={"train": stems[:30], "val": stems[30:35], "test": stems[35:]})
    import polypseg.data as data

    monkeypatch.setattr(data, "discover", lambda folder: folder, raising=False)
    monkeypatch.setattr(data, "make_split", lambda index, seed=0: fake, raising=False)
    info = runs_module.prepare_splits(plan)
    splits = {k: load_split(runs_module.split_path(plan, k)) for k in info}
    train = {k: set(s.sets["train"]) for k, s in splits.items()}
    assert [len(train[k]) for k in ("kvasir-10", "kvasir-25", "kvasir-50", "kvasir")] == \
        [3, 8, 15, 30]  # round(f * 30), half to even
    assert train["kvasir-10"] < train["kvasir-25"] < train["kvasir-50"] < train["kvasir"]
    for key in ("kvasir-10", "kvasir-25", "kvasir-50"):
        assert splits[key].sets["val"] == fake.sets["val"]
        assert splits[key].sets["test"] == fake.sets["test"]
        assert info[key]["train_fraction"] < 1 and info[key]["base"] == "kvasir"


def test_the_shipped_scarce_labels_plan() -> None:
    from polypseg.bench.plan import load_plan

    root = Path(__file__).resolve().parents[2]
    plan = load_plan(root / "plans" / "cpu-data.yaml", check_paths=False)
    assert not plan.reduced and plan.size == 96 and plan.depth == 3 and plan.seeds == (0, 1, 2)
    assert sorted(d.key for d in plan.datasets) == sorted(
        f"{base}{suffix}" for base in ("kvasir", "cvc") for suffix in ("-10", "-25", "-50", ""))
    assert {e.name for e in plan.entries} == {"unet", "unet+rotaug", "unet+tta", "unet-wide",
                                              "p4", "p4m"}
    assert plan.train_options == {"patience": 8, "min_epochs": 16} and plan.cross_dataset


def test_curves_tables_and_plot_across_fractions(tmp_path: Path, monkeypatch) -> None:
    """Per-image Dice made up per run: the curve of each entry rises with the share, the
    markdown holds a row per entry and a column per share, the plot is written."""
    import numpy as np

    from polypseg.bench import collect
    from polypseg.bench.fractions import fraction_curves, fractions_markdown, plot_fraction_curves

    plan = _plan(tmp_path)
    specs = plan_runs(plan, {"unet": {"width": 2}, "p4": {"width": 1}})
    rng = np.random.default_rng(0)

    def fake_dice(spec, evaluation):
        if spec.dataset.startswith("cvc"):
            return None  # unfinished: adds nothing
        level = 0.5 + 0.3 * spec.train_fraction + (0.05 if spec.entry == "p4" else 0.0)
        return {f"img{i}": float(level + rng.normal(0, 0.05)) for i in range(30)}

    monkeypatch.setattr(collect, "per_image_dice", fake_dice)
    rows = fraction_curves(plan, specs)
    assert [(r["entry"], r["train_fraction"]) for r in rows] == [
        (e, f) for e in ("unet", "p4") for f in FRACTIONS]
    for entry in ("unet", "p4"):
        means = [r["mean"] for r in rows if r["entry"] == entry]
        assert means == sorted(means)
        assert all(r["ci_low"] < r["mean"] < r["ci_high"] and r["n_seeds"] == 2
                   for r in rows if r["entry"] == entry)
    doc = {"fractions": rows, "datasets": {"kvasir": {"label": "Kvasir-SEG"}},
           "comparisons": [{"dataset": "kvasir-10", "entry": "p4", "baseline": "unet",
                            "diff_mean": 0.05, "ci_low": 0.02, "ci_high": 0.08,
                            "verdict": "better"}], "plots": []}
    text = "\n".join(fractions_markdown(doc))
    assert "| unet | " in text and "| p4 | " in text and "10%" in text and "100%" in text
    assert "+0.050 [+0.020, +0.080] **better**" in text
    written = plot_fraction_curves(doc, plan, tmp_path / "out")
    assert sorted(p.suffix for p in written) == [".png", ".svg"]
    assert all(p.stat().st_size > 0 for p in written)


def test_a_datasets_section_shows_its_own_figures_not_the_fractions_plot() -> None:
    """The 100% point's dataset key (``kvasir``) ends the fractions plot's name too: the
    section of that dataset shows its sweep and Pareto figures, the fractions section the
    curve."""
    from polypseg.bench.report import quality_markdown

    doc = json.loads((ROOT / "results" / "quality-cpu.json").read_text())
    doc["plots"] = ["sweep-p-kvasir.png", "fractions-p-kvasir.png", "pareto-p-kvasir.png"]
    text = quality_markdown(doc)
    section = text.split("## Kvasir-SEG", 1)[1].split("\n## ", 1)[0]
    assert "(sweep-p-kvasir.png)" in section and "(pareto-p-kvasir.png)" in section
    assert "fractions-p-kvasir.png" not in section
