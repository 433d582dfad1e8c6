"""Report formatting: mean +- sample std over seeds, from known numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from polypseg.bench.report import (
    format_count,
    format_mean_std,
    mean_std,
    quality_markdown,
    speed_markdown,
    summarize,
)


def test_mean_std_known_numbers() -> None:
    mean, std, n = mean_std([0.80, 0.82, 0.84])
    assert n == 3
    assert mean == pytest.approx(0.82)
    assert std == pytest.approx(0.02)  # sample std (n-1)
    assert format_mean_std([0.80, 0.82, 0.84]) == "0.820 ± 0.020"
    assert format_mean_std([0.5]) == "0.500"
    assert format_mean_std([]) == "n/a"
    assert format_mean_std([1.0, math.nan, 3.0], digits=1) == "2.0 ± 1.4"


def test_format_count() -> None:
    assert format_count(1_965_625) == "1.97M"
    assert format_count(12_300_000_000) == "12.3G"
    assert format_count(None) == "n/a"


def _results() -> list[dict]:
    return [
        {"entry": "unet", "dataset": "kvasir", "seed": s, "train_seconds": 10.0,
         "metrics": {"dice": d, "hd95": 5.0 + s}, "sweep": {"accuracy_mean": d - 0.1}}
        for s, d in enumerate([0.70, 0.72, 0.74])
    ] + [
        {"entry": "p4", "dataset": "kvasir", "seed": s, "train_seconds": 30.0,
         "metrics": {"dice": d, "hd95": 4.0}, "sweep": {"accuracy_mean": d}}
        for s, d in enumerate([0.75, 0.75, 0.78])
    ]


def test_summarize_and_markdown() -> None:
    summary = summarize(_results())
    assert [(r["entry"], r["n"]) for r in summary] == [("unet", 3), ("p4", 3)]
    assert summary[0]["metrics"]["dice"]["mean"] == pytest.approx(0.72)
    assert summary[0]["metrics"]["dice"]["std"] == pytest.approx(0.02)
    doc = {
        "plan": "t", "label": "t (REDUCED)", "reduced": True, "date": "2026-11-21",
        "settings": {"size": 32, "epochs": 1, "seeds": [0, 1, 2], "angles": "0:360:90"},
        "datasets": {"kvasir": {"label": "Kvasir-SEG"}},
        "entries": [{"name": "unet", "variant": "unet", "width": 4, "params": 1234},
                    {"name": "p4", "variant": "p4", "width": 2, "params": 1200,
                     "match": "unet"}],
        "results": _results(),
    }
    text = quality_markdown(doc)
    assert "plan t (REDUCED)" in text and "REDUCED plan" in text
    assert "## Kvasir-SEG" in text
    unet_row = next(line for line in text.splitlines() if line.startswith("| unet |"))
    assert "0.720 ± 0.020" in unet_row and "6.00 ± 1.00" in unet_row
    p4_row = next(line for line in text.splitlines() if line.startswith("| p4 |"))
    assert "**0.760 ± 0.017**" in p4_row  # best Dice in bold
    assert "**4.00 ± 0.00**" in p4_row  # lower HD95 is better
    assert "width matched to unet" in text


def test_speed_markdown() -> None:
    doc = {
        "device": "cpu", "device_name": "Some CPU", "date": "2026-11-21",
        "settings": {"size": 64, "batch_size": 4, "repeats": 3, "warmup": 1},
        "memory_method": "ru_maxrss",
        "models": [
            {"name": "monai-unet", "params": 2e6, "train_images_per_s": 10.0,
             "train_time_ratio": 1.0, "infer_images_per_s": 40.0, "infer_time_ratio": 1.0},
            {"name": "p4", "width": 8, "params": 2e6, "train_images_per_s": 5.0,
             "train_time_ratio": 2.0, "infer_images_per_s": 10.0, "infer_time_ratio": 4.0,
             "train_peak_mib": 120.4},
        ],
        "exported": [{"name": "p4", "original_images_per_s": 10.0,
                      "exported_images_per_s": 11.0, "exported_time_ratio": 0.91,
                      "max_abs_diff": 1e-6}],
    }
    text = speed_markdown(doc)
    assert "| p4 | 8 | 2M | n/a | 5.0 | 2.00x | 10.0 | 4.00x | 120 | n/a |" in text
    assert "0.91x" in text and "1.00e-06" in text


def test_the_fields_metrics_get_their_own_table_with_lower_mae_best() -> None:
    results = _results()
    for row, (mdice, mae) in zip(results, [(0.60, 0.09), (0.62, 0.07), (0.64, 0.08),
                                           (0.70, 0.05), (0.70, 0.06), (0.73, 0.04)],
                                 strict=True):
        row["metrics"].update(mdice=mdice, mae=mae)
    doc = {"plan": "t", "settings": {}, "datasets": {"kvasir": {"label": "Kvasir-SEG"}},
           "results": results}
    text = quality_markdown(doc)
    assert "at the mask's own size" in text
    field = text[text.index("The field's metrics"):]
    header = next(line for line in field.splitlines() if line.startswith("| Entry |"))
    assert header.split(" | ")[1:3] == ["mDice", "mIoU"]
    unet = next(line for line in field.splitlines() if line.startswith("| unet |"))
    p4 = next(line for line in field.splitlines() if line.startswith("| p4 |"))
    assert "0.620 ± 0.020" in unet and "**0.710 ± 0.017**" in p4  # higher mDice best
    assert "**0.050 ± 0.010**" in p4 and "0.080 ± 0.010" in unet  # lower MAE best
    assert "n/a" in unet  # no S-measure in these results
    old = quality_markdown({**doc, "results": _results()})
    assert "The field's metrics" not in old and "the model's input size" in old


_SPEED_RESULTS = sorted(
    path
    for path in (Path(__file__).resolve().parents[2] / "results").glob("speed*.json")
    if str(json.loads(path.read_text()).get("kind", "")).split("/")[0]
    in ("polypseg-speed", "polypseg-speed-side-by-side")
    and path.with_suffix(".md").is_file()
)


@pytest.mark.parametrize("path", _SPEED_RESULTS, ids=lambda p: p.name)
def test_committed_speed_reports_rerender_unchanged(path: Path) -> None:
    """Both speed reports (the variants against MONAI, the side-by-side paths) go through the
    one page renderer, and give back the markdown committed beside their JSON."""
    from polypseg.bench.sidebyside import side_by_side_markdown

    doc = json.loads(path.read_text())
    side_by_side = doc["kind"].startswith("polypseg-speed-side-by-side")
    render = side_by_side_markdown if side_by_side else speed_markdown
    assert render(doc) == path.with_suffix(".md").read_text()


def test_speed_page_puts_the_command_last_among_the_facts() -> None:
    from polypseg.bench.report import speed_page

    text = speed_page("T (cpu)", ["a", "b"], "polypseg bench speed", ["## S", "", "x  "])
    assert text == "# T (cpu)\n\n- a\n- b\n- Command: `polypseg bench speed`\n\n## S\n\nx\n"
    assert "Command" not in speed_page("T", ["a"], None, ["x"])
