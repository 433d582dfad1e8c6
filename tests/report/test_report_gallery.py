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
