"""``polypseg train`` of the variants that learn their symmetry, ``--resume``, and ``polypseg
inspect`` on their runs (through ``polypseg.cli.main``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polypseg.cli import main
from polypseg.training.logs import read_metrics_csv
from polypseg.training.synthetic import make_synthetic

TINY = ["--size", "32", "--width", "2", "--depth", "2", "--batch-size", "2", "--epochs", "1",
        "--limit-train", "4", "--limit-val", "2", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("inspect") / "polyps", n=20, size=64)


@pytest.mark.parametrize("model", ["p4-partial", "p4-rpp"])
def test_train_resume_and_inspect(
    model: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / model
    assert main(["train", "--model", model, "--data", str(data), "--out", str(run), *TINY]) == 0
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert [row["epoch"] for row in read_metrics_csv(run / "metrics.csv")] == [1, 2]
    capsys.readouterr()
    assert main(["inspect", str(run), "--which", "last", "--plot", str(tmp_path / "sym")]) == 0
    out = capsys.readouterr().out
    assert "encoder 0 conv 1" in out and "decoder 1 conv 2" in out
    assert ("elements dropped" if model == "p4-partial" else "free and equivariant") in out
    saved = json.loads((run / "symmetry-last.json").read_text())
    assert saved["epoch"] == 2 and len(saved["layers"]) == 10
    assert (tmp_path / "sym.png").is_file() and (tmp_path / "sym.svg").is_file()


def test_inspect_a_plain_run_and_bad_input(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "unet"
    assert main(["train", "--model", "unet", "--data", str(data), "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["inspect", str(run), "--no-write"]) == 0
    assert "nothing learned to inspect" in capsys.readouterr().out
    assert not (run / "symmetry.json").exists()
    for argv, needle in (
        (["inspect", str(tmp_path / "missing")], "no such run folder"),
        (["inspect", str(run), "--which", "middle"], "--which is best or last"),
        (["inspect", str(run), "--plot", str(tmp_path / "p")], "none of these runs learns"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err
