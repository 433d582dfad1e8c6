"""bench speed --side-by-side on tiny models: both paths timed, ratios, parity, the report."""

from __future__ import annotations

import json
from pathlib import Path

from polypseg.bench.sidebyside import ratios, run_side_by_side, side_by_side_markdown
from polypseg.bench.speed import write_speed
from polypseg.cli import main


def test_ratios_of_medians_and_pairs() -> None:
    r = ratios([2.0, 4.0, 3.0], [1.0, 1.0, 3.0])
    assert r["median_ratio"] == 3.0 / 1.0
    assert r["paired_ratio"] == 2.0 and r["paired_min"] == 1.0 and r["paired_max"] == 4.0


def test_side_by_side_tiny(tmp_path: Path) -> None:
    doc = run_side_by_side(variants=["p4", "unet"], widths=[2, 2], depth=2, size=32,
                           batch_size=2, repeats=2, warmup=0)
    assert [m["name"] for m in doc["models"]] == ["p4", "unet"]
    for row in doc["models"]:
        for key in ("train_wall", "train_cpu", "infer_wall", "infer_cpu"):
            assert row[key]["median_ratio"] > 0 and row[key]["paired_ratio"] > 0
        for mode in ("train_seconds", "infer_seconds"):
            assert len(row[mode]["reference"]["wall"]) == len(row[mode]["optimised"]["cpu"]) == 2
        # the two paths compute the same step to float32 rounding
        assert row["parity"]["logits_rel_diff"] < 1e-4
        assert row["parity"]["max_grad_rel_diff"] < 1e-3
    json_path, md_path = write_speed(doc, tmp_path, "sbs", render=side_by_side_markdown)
    assert json.loads(json_path.read_text())["kind"].startswith("polypseg-speed-side-by-side")
    assert "| p4 | 2 |" in md_path.read_text()


def test_cli_side_by_side_and_report(tmp_path: Path, capsys) -> None:
    code = main(["bench", "speed", "--side-by-side", "--variants", "unet", "--widths", "2",
                 "--depth", "1", "--size", "16", "--batch-size", "1", "--repeats", "1",
                 "--warmup", "0", "--out", str(tmp_path)])
    assert code == 0
    written = tmp_path / "speed-train-cpu-16.json"
    assert written.is_file()
    written.with_suffix(".md").unlink()
    assert main(["bench", "report", str(written)]) == 0
    assert "optimised against reference" in written.with_suffix(".md").read_text()
    assert main(["bench", "speed", "--side-by-side", "--variants", "unet,p4", "--widths", "2",
                 "--out", str(tmp_path)]) == 2
    assert "one width" in capsys.readouterr().err


def test_side_by_side_infer_only(tmp_path: Path) -> None:
    doc = run_side_by_side(variants=["p4"], widths=[2], depth=2, size=32, batch_size=2,
                           repeats=2, warmup=0, modes=("infer",))
    (row,) = doc["models"]
    assert "train_wall" not in row and "train_seconds" not in row
    assert row["infer_wall"]["median_ratio"] > 0
    assert len(row["infer_seconds"]["optimised"]["wall"]) == 2
    # eval-mode logits of the channels-last and NCHW paths: float32 rounding apart
    assert row["parity"]["eval_logits_rel_diff"] < 5e-6
    assert "predict_probs" in doc["paths"]["optimised"]
    text = side_by_side_markdown(doc)
    assert text.startswith("# Inference:") and "| p4 | 2 |" in text
    assert "train speed-up" not in text


def test_cli_infer_only_default_stem(tmp_path: Path) -> None:
    code = main(["bench", "speed", "--side-by-side", "--infer-only", "--variants", "unet",
                 "--widths", "2", "--depth", "1", "--size", "16", "--batch-size", "1",
                 "--repeats", "1", "--warmup", "0", "--out", str(tmp_path)])
    assert code == 0
    assert (tmp_path / "speed-infer-cpu-16.md").read_text().startswith("# Inference:")
