"""What a run learned about its symmetry: polypseg.inspection on hand-made run folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

import zoo
from polypseg.data import Split
from polypseg.inspection import FORMAT, format_inspection, inspect_run, summarize
from polypseg.training.runs import create_run


def _split() -> Split:
    return Split(dataset="kvasir-seg", rule="hand-made", seed=0,
                 sets={"train": ["a"], "val": ["b"], "test": ["c"]})  # fmt: skip


def _partial_run(folder: Path) -> Path:
    """A p4-partial run whose first layer dropped 90 and 270 degrees (p = 0.27)."""
    model = zoo.create("p4-partial", width=1, depth=1)
    with torch.no_grad():
        model.encoder[0][0][1].subset.logits.copy_(torch.tensor([-1.0, 2.0, -1.0]))
    return create_run(folder, model, 16, _split())


def test_partial_run(tmp_path: Path) -> None:
    run = _partial_run(tmp_path / "partial")
    result = inspect_run(run)
    assert result["format"] == FORMAT and result["variant"] == "p4-partial"
    first = result["layers"][0]
    assert first["layer"] == "encoder 0 conv 1" and first["kept"] == ["0°", "180°"]
    p_dropped = round(float(torch.sigmoid(torch.tensor(-1.0))), 6)
    assert result["summary"] == {
        "kind": "subset", "layers": 6, "layers_reduced": 1, "elements": 18,
        "elements_dropped": 2, "min_probability": p_dropped,
    }  # fmt: skip
    assert json.loads((run / "symmetry.json").read_text()) == {
        k: v for k, v in result.items() if k != "file"
    }
    text = format_inspection(result)
    assert "encoder 0 conv 1   1.000   0.269   0.881   0.269  0°, 180°" in text
    assert "1 of 6 layers reduced, 2 of 18 elements dropped" in text


def test_rpp_run_its_last_checkpoint_and_a_bare_checkpoint(tmp_path: Path) -> None:
    model = zoo.create("p4-rpp", width=1, depth=1)
    with torch.no_grad():
        model.decoder[0][1][0].free.fill_(0.01)
    run = create_run(tmp_path / "rpp", model, 16, _split())
    result = inspect_run(run, which="last")
    assert result["file"] == str(run / "symmetry-last.json")
    ratios = [row["ratio"] for row in result["layers"]]
    assert ratios[-1] > 0 and ratios[:-1] == [0.0] * 5
    assert result["summary"]["max_ratio"] == ratios[-1]
    assert "decoder 0 conv 2" in format_inspection(result)
    bare = tmp_path / "elsewhere"
    bare.mkdir()
    for suffix in (".json", ".safetensors"):
        shutil.copy(run / "checkpoints" / f"best{suffix}", bare / f"model{suffix}")
    result = inspect_run(bare / "model.safetensors")
    assert result["file"] == str(bare / "model-symmetry.json") and result["name"] == "model"


def test_a_variant_that_learns_nothing(tmp_path: Path) -> None:
    run = create_run(tmp_path / "p4", zoo.create("p4", width=1, depth=1), 16, _split())
    result = inspect_run(run, write=False)
    assert result["layers"] == [] and result["summary"] == {"kind": None} and "file" not in result
    assert "nothing learned to inspect" in format_inspection(result)
    assert not (run / "symmetry.json").exists()


def test_summary_of_no_layers() -> None:
    assert summarize([]) == {"kind": None}
