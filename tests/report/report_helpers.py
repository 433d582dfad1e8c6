"""Helpers of the report tests: sweep entries and bench quality documents made by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def per_angle(accuracy: dict[float, float], consistency: float = 0.9) -> list[dict[str, Any]]:
    """Sweep ``per_angle`` entries with the given mean accuracy per angle."""
    def stats(mean: float) -> dict[str, float]:
        return {"mean": mean, "std": 0.0, "q1": mean, "median": mean, "q3": mean, "min": mean,
                "max": mean, "n": 4}

    return [{"angle": a, "accuracy": stats(v),
             "consistency": stats(1.0 if a % 90 == 0 else consistency)}
            for a, v in accuracy.items()]


def quality_doc(**extra: Any) -> dict[str, Any]:
    """A bench quality document of two entries x two seeds (no run folders at hand)."""
    from polypseg.bench.report import summarize

    results = []
    for entry, dice in (("unet", (0.60, 0.64)), ("p4", (0.70, 0.71))):
        for seed, value in enumerate(dice):
            results.append({
                "entry": entry, "dataset": "kvasir", "seed": seed,
                "run": f"runs/gone/{entry}/seed{seed}", "tta": None,
                "metrics": {"dice": value, "iou": value - 0.1, "hd95": 10.0 + seed},
                "sweep": {"accuracy_mean": 0.5 + seed / 10, "accuracy_off90": 0.45 + seed / 10,
                          "accuracy_0": 0.55 + seed / 20,
                          "consistency_off90": 0.8 + seed / 20, "accuracy_min": 0.4},
                "sweep_file": f"runs/gone/{entry}/seed{seed}/bench/{entry}/sweep.json",
                "val_dice": value, "train_seconds": 100.0 + seed,
            })
    doc = {
        "kind": "polypseg-quality/1", "plan": "hand", "label": "hand", "reduced": False,
        "date": "2026-01-01", "command": "polypseg bench quality --plan hand.yaml",
        "hardware": {"device": "cpu", "device_name": "test CPU", "cores": 2},
        "settings": {"size": 32, "angles": "0:360:45", "seeds": [0, 1]},
        "datasets": {"kvasir": {"label": "Kvasir-SEG", "rule": "random by image",
                                "counts": {"test": 6}}},
        "entries": [{"name": "unet", "params": 1000, "macs_256": 2_000_000},
                    {"name": "p4", "params": 990, "macs_256": 8_000_000}],
        "missing": [], "plots": [], "results": results, "summary": summarize(results),
    }
    doc.update(extra)
    return doc


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path
