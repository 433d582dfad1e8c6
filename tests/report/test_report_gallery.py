"""The gallery: which images it picks, and that what it shows is what the sweep measured."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from polypseg.report.gallery import build_gallery, least_consistent, lowest_dice
from polypseg.report.inputs import collect


def test_least_consistent_takes_each_image_at_its_worst_angle(tmp_path: Path) -> None:
    rows = ["run,stem,angle,consistency,accuracy",
            "a,x,0.0,0.1,0.5",  # angle 0 is never a pick
            "a,x,45.0,0.7,0.5", "a,x,90.0,0.6,0.5",
            "a,y,45.0,0.9,0.5", "a,z,45.0,0.6,0.5",
            "b,w,45.0,0.0,0.5"]  # another run of the sweep
    path = tmp_path / "sweep_images.csv"
    path.write_text("\n".join(rows) + "\n")
    assert least_consistent(path, "a", 2) == [("x", 90.0, 0.6), ("z", 45.0, 0.6)]
    assert least_consistent(path, "a", 5)[-1] == ("y", 45.0, 0.9)


def test_lowest_dice(tmp_path: Path) -> None:
    images = [{"stem": s, "dice": d} for s, d in (("a", 0.5), ("b", 0.1), ("c", None),
                                                  ("d", 0.1), ("e", 0.9))]
    path = tmp_path / "test.json"
    path.write_text(json.dumps({"images": images}))
    assert lowest_dice(path, 3) == [("b", 0.1), ("d", 0.1), ("a", 0.5)]


def _png_shape(png: bytes) -> tuple[int, ...]:
    return np.asarray(Image.open(io.BytesIO(png))).shape


@pytest.mark.parametrize("name", ["unet", "p4"])
def test_the_gallery_recomputes_what_the_sweep_measured(demo: Path, name: str) -> None:
    view = next(v for v in collect([demo]).models if v.label == name)
    gallery = build_gallery(view, count=3)
    assert gallery.notes == []
    assert gallery.facts["params"] > 0 and gallery.facts["macs_256"] > 0
    assert gallery.facts["size"] == 32
    picks = least_consistent(view.images_csv, name, 3)
    assert [(r.stem, r.angle) for r in gallery.consistency] == [(s, a) for s, a, _ in picks]
    for row, (_, _, recorded) in zip(gallery.consistency, picks, strict=True):
        # the same model on the same tensors: equal up to float noise across kernels
        assert row.score == pytest.approx(recorded, abs=1e-6)
        assert [t.caption.split()[0] for t in row.tiles] == [
            "input", "prediction", "prediction", "difference"]
        assert all(_png_shape(t.png) == (32, 32, 3) for t in row.tiles)
    picks = lowest_dice(view.eval_file, 3)
    assert [(r.stem, r.score) for r in gallery.lowest_dice] == picks
    assert all(len(r.tiles) == 3 for r in gallery.lowest_dice)


def test_what_cannot_be_shown_becomes_a_note(demo: Path, tmp_path: Path) -> None:
    view = next(v for v in collect([demo]).models if v.label == "p4")
    view.data_dir = tmp_path / "moved"
    gallery = build_gallery(view)
    assert gallery.consistency == [] and gallery.lowest_dice == []
    assert any("moved" in note for note in gallery.notes)
    view = next(v for v in collect([demo / "p4"]).models)  # the run alone: no sweep
    gallery = build_gallery(view, count=2)
    assert gallery.consistency == [] and len(gallery.lowest_dice) == 2
    assert any("sweep_images.csv" in note for note in gallery.notes)


def test_images_predicted_empty_are_never_least_consistent() -> None:
    from polypseg.report.gallery import _pick_inconsistent

    angles = {"a": {"x": {45.0: 0.0}, "y": {45.0: 0.5, 90.0: 0.9}, "z": {45.0: 0.7}},
              "b": {"x": {45.0: 0.0}, "y": {45.0: 0.3, 90.0: 0.1}, "z": {45.0: 0.6}}}
    # x: both models predict nothing on it (a consistency of 0 says nothing); z: model b
    # predicts nothing, so only a counts
    scores = {"a": {"x": (0.0, 0.0), "y": (0.8, 0.2), "z": (0.8, 0.3)},
              "b": {"x": (0.0, 0.001), "y": (0.7, 0.2), "z": (0.0, 0.0)}}
    picks = _pick_inconsistent(angles, scores, 3)
    assert [(s, a) for s, a, _ in picks] == [("y", 45.0), ("z", 45.0)]
    assert picks[0][2] == pytest.approx(0.4) and picks[1][2] == pytest.approx(0.7)


def test_disagreement_is_the_spread_of_dice_across_models() -> None:
    from polypseg.report.gallery import _pick_disagree

    scores = {"a": {"x": (0.9, 0.1), "y": (0.5, 0.1), "z": (0.2, 0.1)},
              "b": {"x": (0.1, 0.1), "y": (0.6, 0.1), "z": (0.2, 0.1)},
              "c": {"x": (0.5, 0.1), "y": (0.4, 0.1)}}  # z not evaluated by c: left out
    assert _pick_disagree(scores, 5) == [("x", pytest.approx(0.8)), ("y", pytest.approx(0.2))]


def test_the_comparison_shows_every_model_on_the_same_images(demo: Path) -> None:
    from polypseg.report.gallery import (
        _eval_scores,
        _pick_disagree,
        _worst_angles,
        build_comparison,
    )

    views = collect([demo]).models
    comparison = build_comparison(views, count=2, stalled={"p4"})
    assert comparison.notes == [] and sorted(comparison.models) == ["p4", "unet"]
    scores = {v.label: _eval_scores(v) for v in views}
    assert [r.stem for r in comparison.disagree] == [s for s, _ in _pick_disagree(scores, 2)]
    assert comparison.best == "unet"  # p4 is marked stalled: never the best
    unet = scores["unet"]
    assert [r.stem for r in comparison.best_worst] == sorted(
        unet, key=lambda s: (unet[s][0], s))[:2]
    for row in [*comparison.disagree, *comparison.best_worst]:
        names = [t.caption.split("|")[0] for t in row.tiles]
        assert names == ["input", "ground truth", *comparison.models]
        for tile in row.tiles[2:]:
            model = tile.caption.split("|")[0]
            assert tile.caption.endswith(f"Dice {scores[model][row.stem][0]:.3f}")
    worst = {v.label: _worst_angles(v) for v in views}
    for row in comparison.consistency:
        angle = float(row.note.split("°")[0].split()[-1])
        for tile in row.tiles[1:]:
            model, shown = tile.caption.split("|")
            if shown != "empty at both":  # recomputed now: what the sweep measured
                assert float(shown) == pytest.approx(worst[model][row.stem][angle], abs=1e-3)
