"""The trained models shipped under ``results/models`` (the 96-px CPU study) and
``results/models-192`` (the 192-px study, once collected): they load as they are, reproduce the
per-image test scores their study published for them, and ``predict`` and ``serve`` agree on a
real image.

Each folder and its study's ``results/quality-PLAN.json`` are regenerated together
(``polypseg bench quality --collect`` then ``polypseg bench bundle``); these tests catch a
bundle that drifted from the study (a stale copy, the wrong seed, weights a later version reads
differently). Skipped when the shared datasets are absent (``../shared/data``).
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from polypseg.bench.bundles import bundle_name
from polypseg.bench.collect import best_runs

REPO = Path(__file__).resolve().parents[2]
#: ``(collected study, folder of its bundles)``; a study not collected yet ships nothing.
STUDIES = [(REPO / "results" / "quality-cpu.json", REPO / "results" / "models"),
           (REPO / "results" / "quality-cpu-192.json", REPO / "results" / "models-192")]
MODELS = STUDIES[0][1]
DATA = {"kvasir": "Kvasir-SEG", "cvc": "CVC-ClinicDB"}
#: Test images re-scored per bundle (the first of its split's test subset).
N_IMAGES = 6
#: Per-image Dice may move by a few boundary pixels between CPUs (other MKL kernels put a
#: probability near the threshold on the other side); a wrong or stale model moves it by far
#: more. The mean over the images must agree more tightly.
IMAGE_TOLERANCE, MEAN_TOLERANCE = 0.03, 0.01


def _published(study: Path) -> list[dict[str, Any]]:
    """The study's best run per (entry, dataset): the runs the bundles were made from."""
    doc = json.loads(study.read_text(encoding="utf-8"))
    own = [r for r in doc["results"] if r["entry"] == r.get("trained_as", r["entry"])]
    return sorted(best_runs(own).values(), key=lambda r: (r["dataset"], r["entry"]))


#: ``(folder of the bundles, published row)`` of every shipped bundle.
PUBLISHED = [(models, row) for study, models in STUDIES if study.is_file()
             for row in _published(study)]


def _data_dir(dataset: str) -> Path:
    folder = REPO.parent / "shared" / "data" / DATA[dataset]
    if not (folder / "images").is_dir():
        pytest.skip(f"shared dataset {folder} is absent")
    return folder


def _published_dice(row: dict[str, Any]) -> dict[str, float]:
    """``stem -> Dice`` of the run's published test evaluation (its per-image CSV)."""
    path = REPO / row["run"] / "bench" / row["entry"] / "test.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        return {r["stem"]: float(r["dice"]) for r in csv.DictReader(handle)}


@pytest.mark.parametrize("study,models", STUDIES, ids=lambda p: p.name)
def test_every_trained_entry_of_the_study_is_shipped(study: Path, models: Path) -> None:
    if not study.is_file():
        assert not models.exists(), f"{models} ships bundles of a study never collected"
        return
    assert _published(study), f"{study} holds no trained run"
    shipped = {p.name for p in models.iterdir() if p.is_dir()}
    expected = {bundle_name(r["dataset"], r["entry"]) for r in _published(study)}
    assert shipped == expected


@pytest.mark.parametrize("models,row", PUBLISHED,
                         ids=[f"{m.name}/{bundle_name(r['dataset'], r['entry'])}"
                              for m, r in PUBLISHED])
def test_bundle_reproduces_its_published_scores(models: Path, row: dict[str, Any]) -> None:
    from polypseg.evaluation import evaluate_run

    bundle = models / bundle_name(row["dataset"], row["entry"])
    config = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
    assert (config["seed"], config["out"]) == (row["seed"], row["run"])
    card = (bundle / "README.md").read_text(encoding="utf-8")
    assert f"dice {row['metrics']['dice']:.3f}" in card and f"seed {row['seed']}," in card

    result = evaluate_run(bundle, _data_dir(row["dataset"]), subset="test", limit=N_IMAGES,
                          device="cpu", write=False)
    assert result["split"]["matches_training"]
    published = _published_dice(row)
    ours = {image["stem"]: image["dice"] for image in result["images"]}
    assert len(ours) == N_IMAGES and set(ours) <= set(published)
    gaps = [abs(ours[stem] - published[stem]) for stem in ours]
    assert max(gaps) <= IMAGE_TOLERANCE, dict(zip(ours, gaps, strict=True))
    assert abs(np.mean(list(ours.values())) - np.mean([published[s] for s in ours])) <= (
        MEAN_TOLERANCE)


def test_predict_and_serve_agree_on_a_shipped_model(tmp_path: Path) -> None:
    """``polypseg predict`` and the HTTP server, on the e2cnn (steerable) Kvasir-SEG bundle as
    shipped: masks at the image's size that match each other and the ground truth."""
    with warnings.catch_warnings():  # starlette's TestClient warns about httpx at import
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from polypseg.cli import main
    from polypseg.deploy.bundle import open_model
    from polypseg.deploy.server import ServerSettings, create_app

    bundle = MODELS / "kvasir-steerable"
    if not bundle.is_dir():
        pytest.skip("no kvasir-steerable bundle shipped")
    data = _data_dir("kvasir")
    stem = json.loads((bundle / "split.json").read_text(encoding="utf-8"))["sets"]["test"][0]
    image = next((data / "images").glob(f"{stem}.*"))
    truth = cv2.imread(str(next((data / "masks").glob(f"{stem}.*"))), cv2.IMREAD_GRAYSCALE) > 127

    out = tmp_path / "pred"
    assert main(["predict", str(bundle), str(image), "--out", str(out)]) == 0
    predicted = cv2.imread(str(next((out / "masks").glob("*.png"))), cv2.IMREAD_GRAYSCALE) > 127

    app = create_app(open_model(bundle), ServerSettings())
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/segment", content=image.read_bytes(),
                               headers={"content-type": "image/jpeg"})
    assert response.status_code == 200
    served = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_GRAYSCALE) > 127

    assert predicted.shape == served.shape == truth.shape
    agreement = 2 * np.sum(predicted & served) / max(1, predicted.sum() + served.sum())
    assert agreement >= 0.99
    dice = 2 * np.sum(predicted & truth) / max(1, predicted.sum() + truth.sum())
    assert dice >= 0.5, f"the shipped model segments its first test image at Dice {dice:.3f}"
