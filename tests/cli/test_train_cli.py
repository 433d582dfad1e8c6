"""``polypseg train | evaluate | sweep | plot`` through ``polypseg.cli.main``: results and
clear one-line errors (exit status 2, no traceback) for bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from polypseg.cli import main
from polypseg.training.synthetic import make_synthetic

TINY = ["--size", "32", "--width", "2", "--depth", "2", "--batch-size", "2", "--epochs", "1",
        "--limit-train", "4", "--limit-val", "2", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("cli") / "polyps", n=20, size=64)


@pytest.fixture(scope="module")
def run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "p4"
    assert main(["train", "--model", "p4", "--data", str(data), "--out", str(out), *TINY]) == 0
    return out


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    """Run ``argv``; check exit status 2 and a one-line error holding every needle."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_train_evaluate_sweep_plot(
    run: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (run / "checkpoints" / "best.safetensors").is_file()
    assert main(["evaluate", str(run), "--split", "test"]) == 0  # --data from the run's config
    out = capsys.readouterr().out
    assert "dice" in out and (run / "eval" / "test.json").is_file()
    assert main(["sweep", str(run), "--data", str(data), "--angles", "0:360:90",
                 "--limit", "2"]) == 0
    assert json.loads((run / "sweep" / "sweep.json").read_text())["angles"] == [0, 90, 180, 270]
    assert main(["plot", str(run / "sweep"), "--out", str(tmp_path / "angle.png")]) == 0
    assert main(["plot", str(run)]) == 0
    assert (tmp_path / "angle.svg").is_file() and (run / "training.png").is_file()


def test_resume_continues_from_the_saved_config(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    config = json.loads((copy / "config.json").read_text())
    config["out"] = str(copy)
    (copy / "config.json").write_text(json.dumps(config))
    assert main(["train", "--out", str(copy), "--resume", "--epochs", "2"]) == 0
    assert len((copy / "metrics.csv").read_text().strip().splitlines()) == 3  # header + 2


def test_missing_run_folder(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    _fails(["evaluate", str(missing), "--data", str(data)], capsys, "no such run folder", "nope")
    _fails(["sweep", str(missing), "--data", str(data)], capsys, "no such run folder")
    _fails(["train", "--out", str(missing), "--resume"], capsys, "cannot resume", "config.json")


def test_resume_with_another_variant_or_size(
    run: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fails(["train", "--model", "unet", "--out", str(run), "--resume"], capsys,
           "cannot resume", "variant: run has 'p4', now 'unet'")
    _fails(["train", "--out", str(run), "--resume", "--size", "64"], capsys,
           "cannot resume", "size: run has 32, now 64")


def test_checkpoint_of_another_variant(
    run: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unet = tmp_path / "unet"
    assert main(["train", "--model", "unet", "--data", str(data), "--out", str(unet), *TINY]) == 0
    shutil.copy(unet / "checkpoints" / "best.safetensors", run.parent / "swapped.safetensors")
    shutil.copy(run / "checkpoints" / "best.json", run.parent / "swapped.json")
    _fails(["evaluate", str(run.parent / "swapped"), "--data", str(data), "--split-file",
            str(run / "split.json")], capsys, "does not fit this model", "another variant")


def test_empty_split(run: Path, data: Path, tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    split = json.loads((run / "split.json").read_text())
    split["sets"]["train"] += split["sets"]["test"]
    split["sets"]["test"] = []
    path = tmp_path / "no-test.json"
    path.write_text(json.dumps(split))
    _fails(["evaluate", str(run), "--data", str(data), "--split-file", str(path)], capsys,
           "test set is empty")


@pytest.mark.parametrize(
    ("text", "needle"),
    [("epochs: [1\n", "not valid YAML"), ("bogus: 1\n", "unknown key 'bogus'"),
     ("lr: fast\n", "'lr' must be float")],
)
def test_invalid_config_yaml(text: str, needle: str, data: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(text)
    _fails(["train", "--config", str(path), "--model", "p4", "--data", str(data)], capsys,
           needle, str(path))


def test_unreadable_config_and_unknown_model(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fails(["train", "--config", str(tmp_path / "none.yaml"), "--model", "p4"], capsys,
           "config file not found")
    _fails(["train", "--model", "resnet", "--data", str(data), "--out", str(tmp_path / "r"),
            *TINY], capsys, "unknown model 'resnet'", "available:")
    _fails(["sweep", str(tmp_path), "--data", str(data), "--angles", "0:360"], capsys,
           "START:STOP:STEP")


def test_train_with_negatives_then_calibrate_again(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "neg"
    assert main(["train", "--model", "unet", "--data", str(data), "--out", str(out),
                 "--negatives", "0.5", *TINY]) == 0
    assert json.loads((out / "config.json").read_text())["negatives"] == 0.5
    first = json.loads((out / "checkpoints" / "best.json").read_text())["decision"]
    assert first["target_specificity"] == 0.95
    capsys.readouterr()
    assert main(["calibrate", str(out), "--target-specificity", "1.0", "--device", "cpu"]) == 0
    said = capsys.readouterr().out
    assert "polyp present when" in said and "with --tta rot90: when" in said
    again = json.loads((out / "checkpoints" / "best.json").read_text())["decision"]
    assert again["target_specificity"] == 1.0
    if again["source"] == "validation":
        assert again["val_specificity"] == 1.0
        assert again["by_tta"]["rot90"]["val_specificity"] == 1.0
    _fails(["train", "--model", "unet", "--data", str(data), "--out", str(tmp_path / "x"),
            "--negatives", "0.95", *TINY], capsys, "--negatives")
    _fails(["train", "--model", "unet", "--data", str(data), "--out", str(tmp_path / "y"),
            "--negatives", "0.2", "--negatives-dir", str(tmp_path / "none"), *TINY],
           capsys, "negatives folder not found")
    assert not (tmp_path / "y").exists()
    _fails(["calibrate", str(tmp_path / "missing")], capsys, "no such run folder")
