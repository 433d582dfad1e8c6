"""Rotation sweeps of untrained runs: exact p4 consistency at multiples of 90 degrees.

Consistency is a Dice of thresholded maps. Rotated and unrotated images go through the model in
batches of other sizes (other kernels), so their logits agree to float rounding, not to the
bit; a pixel whose logit sits within rounding of the threshold may flip (each head's bias is set
to put the threshold at a median logit). ``EXACT`` allows a few such pixels: a flip costs about
0.003 of Dice on these 32 px images, while the plain U-Net scores 0.47-0.55 at quarter turns.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from polypseg.data import discover, make_split
from polypseg.errors import RunError
from polypseg.sweep import angle_summary, sweep_runs
from polypseg.training.datasets import eval_dataset, subset_pairs
from polypseg.training.models import build_model
from polypseg.training.runs import create_run
from polypseg.training.synthetic import make_synthetic

SIZE = 32
ANGLES = [0.0, 45.0, 90.0, 180.0, 270.0]
#: Consistency of an exactly equivariant model, up to pixels at the threshold (see above).
EXACT = 0.99


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """Synthetic data and two untrained runs (unet, p4) sharing one split; each head's bias is
    set so that about half of the pixels of a test image are predicted as polyp."""
    root = tmp_path_factory.mktemp("sweep")
    data = make_synthetic(root / "polyps", n=30, size=SIZE)
    split = make_split(discover(data), seed=0)
    image = eval_dataset(subset_pairs(discover(data), split, "test", 1), SIZE)[0]["image"]
    folders = []
    for name in ("unet", "p4"):
        torch.manual_seed(1)
        model, _ = build_model(name, width=2, depth=2)
        with torch.no_grad():
            model.head.bias -= model.eval()(image[None]).median()
        folders.append(create_run(root / name, model, SIZE, split))
    return data, folders


def test_p4_is_exactly_consistent_at_quarter_turns_and_unet_is_not(
    runs: tuple[Path, list[Path]],
) -> None:
    data, folders = runs
    result = sweep_runs(folders, data, ANGLES, limit=3, batch_size=4)
    for angle in (0.0, 90.0, 180.0, 270.0):
        stats = angle_summary(result, "p4", angle, "consistency")
        assert stats["min"] >= EXACT, (angle, stats)
    unet = [angle_summary(result, "unet", a, "consistency")["mean"] for a in (90, 180, 270)]
    assert max(unet) < EXACT, unet
    assert angle_summary(result, "unet", 0.0, "consistency")["min"] >= EXACT
    assert 0.0 <= angle_summary(result, "p4", 45.0, "accuracy")["mean"] <= 1.0

    assert result["n_images"] == 3 and result["angles"] == ANGLES
    assert [r["name"] for r in result["runs"]] == ["unet", "p4"]
    assert all(r["split_matches_training"] for r in result["runs"])
    out = Path(result["files"]["json"]).parent
    assert out == folders[0].parent / "sweep"
    with open(out / "sweep.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * len(ANGLES) * 2  # runs x angles x (consistency, accuracy)
    assert {"run", "angle", "metric", "mean", "std", "q1", "median", "q3"} <= set(rows[0])
    with open(out / "sweep_images.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 2 * len(ANGLES) * 3


def test_one_run_writes_into_its_own_folder_and_bad_input_is_clear(
    runs: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    data, folders = runs
    result = sweep_runs([folders[1]], data, [0.0, 30.0], limit=1)
    assert Path(result["files"]["json"]) == folders[1] / "sweep" / "sweep.json"
    with pytest.raises(RunError, match="no such run folder"):
        sweep_runs([tmp_path / "missing"], data, [0.0])
    with pytest.raises(RunError, match="at least one angle"):
        sweep_runs(folders, data, [])


def test_channels_last_and_nchw_sweeps_agree(runs: tuple[Path, list[Path]]) -> None:
    """The CPU default (channels-last) against NCHW: the same Dice up to pixels whose
    probability sits within float rounding of the threshold (none here, or a flip each)."""
    data, folders = runs
    kwargs = {"limit": 3, "batch_size": 5, "write": False}
    last = sweep_runs(folders, data, ANGLES, channels_last=True, **kwargs)
    nchw = sweep_runs(folders, data, ANGLES, channels_last=False, **kwargs)
    for run_last, run_nchw in zip(last["runs"], nchw["runs"], strict=True):
        for per_last, per_nchw in zip(run_last["per_angle"], run_nchw["per_angle"],
                                      strict=True):
            for metric in ("consistency", "accuracy"):
                assert abs(per_last[metric]["mean"] - per_nchw[metric]["mean"]) <= 0.01
