"""Model bundles: the best run of each entry, as a run folder that predict takes as it is."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from polypseg.cli import main


def test_bundles_are_runs_that_predict_takes(tiny_bench: Path, tmp_path: Path) -> None:
    plan = tiny_bench / "tiny.yaml"
    assert main(["bench", "quality", "--plan", str(plan)]) == 0
    out = tmp_path / "models"
    assert main(["bench", "bundle", "--plan", str(plan), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["kvasir-p4", "kvasir-unet"]
    bundle = out / "kvasir-p4"
    for name in ("checkpoints/best.safetensors", "checkpoints/best.json", "split.json",
                 "config.json", "metrics.csv", "README.md", "eval/test.json",
                 "sweep/sweep.json", "sweep/sweep_images.csv"):
        assert (bundle / name).is_file(), name
    # the bundle's own evaluation and sweep are its run's, so a report shows its numbers
    run = tiny_bench / "runs" / "kvasir" / "p4" / "seed0" / "bench" / "p4"
    assert (bundle / "eval" / "test.json").read_bytes() == (run / "test.json").read_bytes()
    from polypseg.report.inputs import collect

    view = collect([bundle]).models[0]
    assert view.eval_file == bundle / "eval" / "test.json"
    assert view.images_csv == bundle / "sweep" / "sweep_images.csv"
    config = json.loads((bundle / "config.json").read_text())
    assert not Path(config["data"]).is_absolute() and config["variant"] == "p4"
    card = (bundle / "README.md").read_text()
    doc = json.loads((tiny_bench / "results" / "quality-tiny.json").read_text())
    row = next(r for r in doc["results"] if r["entry"] == "p4")
    assert f"test Dice {row['metrics']['dice']:.3f}" in card
    assert "Research use only" in card and "polypseg train --model p4" in card
    assert "polypseg predict results/models/kvasir-p4" in card
    assert "at each test mask's own size" in card and f"mdice {row['metrics']['mdice']:.3f}" in card
    # the card states the false-positive rate and the thresholds the checkpoint records
    from polypseg.decision import DEFAULT_DECISION

    rule = json.loads((bundle / "checkpoints" / "best.json").read_text()).get("decision")
    rule = rule or DEFAULT_DECISION
    negatives = row["negatives"]
    assert (f"{100 * negatives['false_positive_rate']:.1f}% of {negatives['n_negatives']} test "
            "negatives") in card
    assert (f"covers at least {rule['min_area_fraction']:.2%} of the image and its peak "
            f"probability is at least {rule['min_peak_probability']:.3f}") in card
    from polypseg.deploy.bundle import open_model

    tested = open_model(bundle).info()["test_metrics"]  # what GET /v1/model reports
    evaluated = json.loads((bundle / "eval" / "test.json").read_text())
    assert tested["size"] == "mask" and tested["n_images"] == evaluated["n_images"]
    for name in ("dice", "mdice", "miou", "s_measure", "weighted_f", "e_measure_max", "mae"):
        assert tested[name] == evaluated["summary"][name]["mean"] == row["metrics"][name]
    exported = tmp_path / "export"  # a float export computes what the bundle does: same numbers
    assert main(["export", str(bundle), "--format", "state", "--out", str(exported)]) == 0
    assert open_model(exported).info()["test_metrics"] == tested
    image = next((tiny_bench / "Kvasir-SEG" / "images").iterdir())
    predictions = tmp_path / "pred"
    assert main(["predict", str(bundle), str(image), "--out", str(predictions)]) == 0
    from PIL import Image

    masks = list(predictions.rglob("*.png"))
    assert masks, "predict wrote no mask"
    mask = np.asarray(Image.open(sorted(masks)[0]))
    assert mask.shape[:2] == np.asarray(Image.open(image)).shape[:2]


def test_bundles_and_collected_doc_hold_paths_of_this_checkout(
    tiny_bench: Path, tmp_path: Path
) -> None:
    """A run committed from another clone records that clone's absolute paths; its bundle
    and the collected document name the plan's paths, relative to the project root."""
    plan = tiny_bench / "tiny.yaml"
    assert main(["bench", "quality", "--plan", str(plan)]) == 0
    run_config = tiny_bench / "runs" / "kvasir" / "p4" / "seed0" / "config.json"
    config = json.loads(run_config.read_text())
    for key in ("data", "out", "split_file"):
        config[key] = f"/elsewhere/clone/{key}"
    run_config.write_text(json.dumps(config))
    out = tmp_path / "models"
    assert main(["bench", "bundle", "--plan", str(plan), "--out", str(out)]) == 0
    bundled = json.loads((out / "kvasir-p4" / "config.json").read_text())
    assert bundled["out"] == "runs/kvasir/p4/seed0"
    for key in ("data", "split_file"):
        assert "elsewhere" not in bundled[key] and (tiny_bench / bundled[key]).exists(), key
    doc = json.loads((tiny_bench / "results" / "quality-tiny.json").read_text())
    for info in doc["datasets"].values():
        assert not Path(info["split_file"]).is_absolute()
        assert (tiny_bench / info["split_file"]).is_file()


def test_training_command_carries_the_stopping_rule(tiny_bench: Path) -> None:
    from polypseg.bench.bundles import training_command
    from polypseg.bench.plan import load_plan

    plan = load_plan(tiny_bench / "tiny.yaml")
    train = {"variant": "p4", "data": "d", "split_file": "s.json", "out": "o", "seed": 0,
             "patience": 8, "min_epochs": 16}
    words = training_command(train, plan).split()
    assert words[words.index("--seed") + 1] == "0"  # a zero that is a setting stays
    assert words[words.index("--patience") + 1] == "8"
    assert words[words.index("--min-epochs") + 1] == "16"
    assert "--min-epochs" not in training_command(dict(train, min_epochs=0), plan).split()


def test_card_says_whether_the_decision_was_calibrated() -> None:
    from polypseg.bench.bundles import frames_without_polyp

    row = {"n_test_images": 90, "negatives": {
        "false_positive_rate": 0.25, "mean_pred_fraction": 0.0123, "n_negatives": 80,
        "frame_sensitivity": 0.9, "frame_specificity": 0.8}}
    default = "\n".join(frames_without_polyp(row, None, 0.0))
    assert "25.0% of 80 test negatives" in default and "mean predicted area on them 1.2%" in default
    assert "not calibrated" in default and "at least 0.50% of the image" in default
    assert "no negative examples" in default
    chosen = {"min_area_fraction": 0.0175, "min_peak_probability": 0.9992, "source": "validation",
              "target_specificity": 0.95, "val_sensitivity": 0.911, "val_specificity": 0.964}
    calibrated = "\n".join(frames_without_polyp(row, chosen, 0.2))
    assert "at least 1.75% of the image" in calibrated and "at least 0.999" in calibrated
    assert "specificity 0.95 (validation: sensitivity 0.911, specificity 0.964)" in calibrated
    assert "not calibrated" not in calibrated and "20% of each epoch" in calibrated
    assert "sensitivity 0.900 over the 90 test images, specificity 0.800" in calibrated
    assert "--tta" not in calibrated  # calibrated before per-TTA thresholds: nothing to state
    rot90 = {"min_area_fraction": 0.021, "min_peak_probability": 0.7354,
             "val_sensitivity": 0.93, "val_specificity": 0.952}
    with_tta = {**chosen, "by_tta": {"rot90": rot90}}
    card = "\n".join(frames_without_polyp(row, with_tta, 0.0))
    assert "With `--tta rot90`" in card and "at least 2.10%" in card and "at least 0.735" in card
    assert "at least 1.75% of the image" in card  # the plain rule is still the one stated first
    # a row evaluated with TTA states the rot90 rule as its own
    tta_row = {**row, "tta": "rot90"}
    own = "\n".join(frames_without_polyp(tta_row, with_tta, 0.0))
    assert "at least 2.10% of the image" in own and "predicted with `--tta rot90`" in own
    assert "With `--tta rot90`" not in own
