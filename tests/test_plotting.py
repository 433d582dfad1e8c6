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


def test_curve_styles_give_every_curve_its_own_colour() -> None:
    from polypseg.plotting import VARIANT_COLOURS, curve_styles

    variants = ["unet", "unet", "unet", "unet", "p4", "p4-partial", "p4-rpp", "p4m", "se2n12",
                "steerable", "custom-a", "custom-b"]
    styles = curve_styles(variants)
    colours = [s["color"] for s in styles]
    assert len(set(colours)) == len(variants)  # unet, unet+rotaug, unet-wide: no shared red
    assert colours[0] == VARIANT_COLOURS["unet"] and colours[4] == VARIANT_COLOURS["p4"]
    # a variant's later curves: another line style too, so they read as its family
    assert [s["linestyle"] for s in styles[:4]] == ["-", "--", ":", "-."]
    assert not {colours[-1], colours[-2]} & set(VARIANT_COLOURS.values())


def _legend_outside_axes(fig) -> bool:
    renderer = fig.canvas.get_renderer()
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    return bool(legends) and all(
        not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
        for legend in legends for ax in fig.axes)


def test_figures_have_no_colliding_text_and_legends_outside(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    from polypseg.plotting import overlapping_texts, sweep_figure, training_figure

    runs = []
    for i, variant in enumerate(["unet", "unet", "unet", "p4", "p4m", "se2n12", "steerable",
                                 "p4-partial", "p4-rpp", "unet"]):
        runs.append({"name": f"entry-{i}", "variant": variant, "params": 122_000 + i,
                     "per_angle": [{"angle": float(a), **{m: {"mean": 0.7 + 0.01 * i,
                                                              "q1": 0.6, "q3": 0.8}
                                                          for m in ("consistency", "accuracy")}}
                                   for a in range(0, 360, 15)]})
    sweep = {"runs": runs, "angles": [float(a) for a in range(0, 360, 15)], "dataset": "k",
             "subset": "test", "n_images": 9, "size": 32}
    figures = [sweep_figure([sweep])]
    run_dirs = []
    for i in range(20):  # a two-dataset study's 20 training curves
        run = tmp_path / f"run{i}"
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"model": "unet" if i % 3 else "p4"}))
        write_metrics_csv(run / "metrics.csv", [
            {"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "val_dice": 0.1 * e,
             "lr": 1e-3, "epoch_seconds": 1.0} for e in range(1, 6)])
        run_dirs.append(run)
    figures.append(training_figure(run_dirs, [f"entry-{i} seed{i % 3}" for i in range(20)]))
    try:
        for fig in figures:
            fig.canvas.draw()
            assert overlapping_texts(fig) == []
            assert _legend_outside_axes(fig)
    finally:
        for fig in figures:
            plt.close(fig)


def test_pareto_labels_and_ticks_never_overlap(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    from polypseg.bench.pareto import plot_pareto
    from polypseg.plotting import overlapping_texts

    # the CVC-ClinicDB case: unet-wide and p4-rpp close in cost and Dice, ticks a decade apart
    entries = [("unet", "unet", 0.0098, 0.611), ("unet-wide", "unet", 0.0212, 0.710),
               ("p4", "p4", 0.0223, 0.733), ("p4-rpp", "p4-rpp", 0.0236, 0.710),
               ("p4-partial", "p4-partial", 0.0245, 0.698), ("p4m", "p4m", 0.0427, 0.718)]
    doc = {"plan": "t", "datasets": {"cvc": {"label": "CVC-ClinicDB"}},
           "entries": [{"name": n, "variant": v, "params": 120_000 + 1000 * i}
                       for i, (n, v, _, _) in enumerate(entries)],
           "summary": [{"entry": n, "dataset": "cvc",
                        "metrics": {"dice": {"mean": d, "std": 0.02}}} for n, _, _, d in entries]}
    cost = {"models": [{"name": n, "seconds_per_image": c} for n, _, c, _ in entries]}
    shown = []
    original = plt.close
    plt.close = lambda fig=None: shown.append(fig)  # keep the figure to measure it
    try:
        plot_pareto(doc, cost, tmp_path)
    finally:
        plt.close = original
    fig = shown[0]
    try:
        fig.canvas.draw()
        assert overlapping_texts(fig) == []
        assert _legend_outside_axes(fig)
    finally:
        original(fig)
