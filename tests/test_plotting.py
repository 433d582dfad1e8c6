"""Figures: Dice versus angle from sweep results, training curves from metrics.csv."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polypseg.errors import RunError
from polypseg.plotting import load_sweep, plot_sweeps, plot_training
from polypseg.sweep import FORMAT
from polypseg.training.logs import write_metrics_csv


def _stats(mean: float) -> dict[str, float]:
    return {"mean": mean, "std": 0.05, "q1": mean - 0.05, "median": mean, "q3": mean + 0.02,
            "min": mean - 0.1, "max": min(1.0, mean + 0.1), "n": 4}


def _sweep(tmp_path: Path) -> Path:
    angles = [0.0, 45.0, 90.0, 135.0, 180.0]
    runs = [
        {"name": name, "variant": name, "params": 1000 + i,
         "per_angle": [{"angle": a, "consistency": _stats(1.0 - 0.1 * i * (a % 90 > 0)),
                        "accuracy": _stats(0.6 - 0.05 * i)} for a in angles]}
        for i, name in enumerate(("p4", "unet"))
    ]
    result = {"format": FORMAT, "dataset": "kvasir-seg", "subset": "test", "n_images": 4,
              "size": 32, "angles": angles, "runs": runs}
    path = tmp_path / "sweep" / "sweep.json"
    path.parent.mkdir()
    path.write_text(json.dumps(result))
    return path


def test_dice_vs_angle_png_and_svg(tmp_path: Path) -> None:
    sweep = load_sweep(_sweep(tmp_path).parent)  # a folder holding sweep.json works too
    written = plot_sweeps([sweep], tmp_path / "fig.png")
    assert [p.name for p in written] == ["fig.png", "fig.svg"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = written[1].read_text()
    assert "<svg" in svg and "Consistency" in svg and "p4" in svg


def test_training_curves(tmp_path: Path) -> None:
    run = tmp_path / "run"
    history = [{"epoch": e, "step": 2 * e, "train_loss": 1.0 / e, "val_loss": 1.1 / e,
                "val_dice": 0.1 * e, "lr": 1e-3 / e, "best_val_dice": 0.1 * e,
                "epoch_seconds": 1.0} for e in (1, 2, 3)]
    write_metrics_csv(run / "metrics.csv", history)
    written = plot_training([run], tmp_path / "curves.png")
    assert all(p.stat().st_size > 1000 for p in written)


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no sweep result"):
        load_sweep(tmp_path)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(RunError, match="not a polypseg sweep result"):
        load_sweep(tmp_path / "x.json")
    with pytest.raises(RunError, match="no training log"):
        plot_training([tmp_path], tmp_path / "c.png")


def test_learned_symmetry_panels(tmp_path: Path) -> None:
    from polypseg.plotting import plot_symmetry

    partial = {"name": "a", "variant": "p4-partial", "summary": {"kind": "subset"}, "layers": [
        {"layer": f"layer {i}", "kind": "subset", "elements": ["0°", "90°", "180°", "270°"],
         "probabilities": [1.0, 0.2 * i, 0.9, 0.7], "kept": ["0°", "180°", "270°"]}
        for i in range(3)]}  # fmt: skip
    rpp = {"name": "b", "variant": "p4-rpp", "summary": {"kind": "residual"}, "layers": [
        {"layer": f"layer {i}", "kind": "residual", "ratio": 0.01 * i} for i in range(3)]}
    plain = {"name": "c", "variant": "p4", "summary": {"kind": None}, "layers": []}
    written = plot_symmetry([partial, rpp, plain], tmp_path / "sym.png")
    assert [p.name for p in written] == ["sym.png", "sym.svg"]
    assert all(p.stat().st_size > 1000 for p in written)
    with pytest.raises(RunError, match="none of these runs"):
        plot_symmetry([plain], tmp_path / "none.png")


def test_curve_styles_tell_every_curve_apart_and_group_a_variant() -> None:
    from polypseg.plotting import VARIANT_COLOURS, curve_styles

    variants = ["unet", "unet", "unet", "unet", "p4", "p4-partial", "p4-rpp", "p4m", "se2n12",
                "steerable", "custom-a", "custom-b"]
    styles = curve_styles(variants)
    keys = [(s["color"], s["linestyle"], s["marker"]) for s in styles]
    assert len(set(keys)) == len(variants)  # no two curves look alike
    assert {s["color"] for s in styles[:4]} == {VARIANT_COLOURS["unet"]}  # one hue per variant
    assert styles[0]["linestyle"] == "-" and styles[4]["linestyle"] == "-"
    custom = {styles[-1]["color"], styles[-2]["color"]}
    assert len(custom) == 2 and not custom & set(VARIANT_COLOURS.values())
