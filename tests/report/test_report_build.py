"""The report page as HTML: its sections, tables and pictures, that it loads nothing, escapes
what it shows, and the ``polypseg report`` command (how it looks in a browser:
tests/browser)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from report_helpers import quality_doc, write_json

from polypseg.cli import main
from polypseg.report.build import build_report


def sources(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]*)"', page)


def test_the_demo_report(demo: Path, tmp_path: Path) -> None:
    out = build_report([demo], tmp_path / "r.html")
    page = out.read_text()
    for section in ("summary", "rotation", "training", "gallery", "provenance"):
        assert f'<section id="{section}">' in page
    assert '<section id="comparisons">' not in page  # no bench comparisons here
    assert page.count('<table class="summary">') == 1
    assert page.count("<tr><td>") >= 2  # a row per model
    assert page.count('class="plot"') == 2
    # one gallery for the dataset: the same images for both models; rows of the input and
    # truth (Dice rows) or the input alone (consistency rows), then one tile per model
    assert page.count('<article class="compare"') == 1
    rows = page.split('<div class="row">')[1:]
    tiles = [row.count('<figure class="tile">') for row in rows]
    assert tiles[:6] == [4] * 6 and all(n == 3 for n in tiles[6:]) and len(tiles) <= 9
    for row in rows:
        assert row.count('<span class="name">unet</span>') == 1
        assert row.count('<span class="name">p4</span>') == 1
    assert all(s.startswith(("data:image/", "#")) for s in sources(page)), sources(page)
    assert "default-src 'none'" in page and "<script" not in page
    assert "polypseg train --model p4" in page  # the equivalent command, from config.json


def test_the_demo_wrote_the_same_report(demo: Path) -> None:
    page = (demo / "report.html").read_text()
    assert "<h1>polypseg demo: unet, p4</h1>" in page and page.count('class="tile"') > 0


def test_a_bench_result_with_comparisons_and_seeds(tmp_path: Path) -> None:
    comparisons = [
        {"dataset": "kvasir", "entry": "p4", "baseline": "unet", "diff_mean": 0.085,
         "ci_low": 0.021, "ci_high": 0.149, "level": 0.9, "verdict": "better", "n_images": 6,
         "n_seeds": [2, 2]},
        {"dataset": "kvasir", "entry": "unet+tta", "baseline": "unet", "diff_mean": -0.004,
         "ci_low": -0.03, "ci_high": 0.02, "verdict": "no difference shown", "n_images": 6,
         "n_seeds": 2},
    ]
    path = write_json(tmp_path / "quality-hand.json", quality_doc(comparisons=comparisons))
    page = build_report([path], tmp_path / "r.html").read_text()
    table = page[page.index('<table class="comparisons">'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr><td>") == 2
    assert '<td>+0.085</td><td>[+0.021, +0.149]</td><td class="better">better</td>' in table
    assert "no difference shown" in table and "<th>90% CI</th>" in table
    assert "<td>2 / 2</td>" in table and "<td>2</td>" in table  # seeds as the bench gives them
    assert "0.620 ± 0.028" in page  # unet's Dice over its two seeds
    assert page.count("2 seeds") == 2
    assert "polypseg bench quality --plan hand.yaml" in page  # provenance: the command


def test_a_bench_result_without_comparisons_has_no_such_table(tmp_path: Path) -> None:
    path = write_json(tmp_path / "quality-hand.json", quality_doc())
    page = build_report([path], tmp_path / "r.html").read_text()
    assert "comparisons" not in page and '<table class="summary">' in page


def test_the_bench_plots_beside_the_result_are_shown(tmp_path: Path) -> None:
    plots = ["sweep-hand-kvasir.svg", "pareto-hand-kvasir.svg", "pareto-hand-kvasir.png"]
    for name in plots:
        (tmp_path / name).write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    path = write_json(tmp_path / "quality-hand.json", quality_doc(plots=plots))
    page = build_report([path], tmp_path / "r.html").read_text()
    assert page.count('data-kind="sweep"') == 1 and page.count('data-kind="bench"') == 1
    assert 'alt="pareto-hand-kvasir.svg"' in page


def test_text_from_files_is_escaped(tmp_path: Path) -> None:
    doc = quality_doc(command="polypseg <script>alert(1)</script>")
    doc["entries"][0]["name"] = doc["summary"][0]["entry"] = "<b>unet</b>"
    path = write_json(tmp_path / "quality-hand.json", doc)
    page = build_report([path], tmp_path / "r.html", title="a <i>study</i>").read_text()
    assert "<script>" not in page and "<b>unet</b>" not in page and "<i>study" not in page
    assert "&lt;script&gt;" in page and "&lt;b&gt;unet&lt;/b&gt;" in page


def test_the_command(demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.html"
    assert main(["report", str(demo / "p4"), str(demo / "sweep"), "--out", str(out),
                 "--gallery", "0", "--title", "two runs"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    page = out.read_text()
    assert "<h1>two runs</h1>" in page and 'class="tile"' not in page
    assert "<footer>Written " in page and " by polypseg " in page


@pytest.mark.parametrize("args, message", [
    (["/no/such/run"], "no such file or folder: /no/such/run"),
    (["README.md"], "README.md is not a run folder"),
])
def test_bad_inputs_are_one_line_errors(args: list[str], message: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    assert main(["report", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_the_fields_metrics_are_columns_only_where_the_results_hold_them(tmp_path: Path) -> None:
    from polypseg.bench.report import summarize

    doc = quality_doc()
    old_page = build_report([write_json(tmp_path / "old.json", doc)], tmp_path / "o.html")
    assert "<th>mDice</th>" not in old_page.read_text()
    for row in doc["results"]:
        row["metrics"].update(mdice=row["metrics"]["dice"] - 0.05, mae=0.1 - row["seed"] / 100)
    doc["summary"] = summarize(doc["results"])
    page = build_report([write_json(tmp_path / "new.json", doc)], tmp_path / "n.html").read_text()
    table = page[page.index('<table class="summary">'):]
    table = table[:table.index("</table>")]
    assert "<th>mDice</th>" in table and "<th>MAE</th>" in table
    assert "<th>S-measure</th>" not in table  # no result holds it
    assert "0.570 ± 0.028" in table  # unet's mDice over its two seeds


def test_a_scarce_labels_study_shows_dice_against_the_share_of_labels(tmp_path: Path) -> None:
    fractions = [
        {"dataset": "kvasir", "plan_dataset": key, "train_fraction": share, "entry": entry,
         "mean": mean, "ci_low": mean - 0.02, "ci_high": mean + 0.02, "level": 0.95,
         "n_images": 6, "n_seeds": 2}
        for entry, means in (("unet", (0.50, 0.62)), ("p4", (0.58, 0.70)))
        for (key, share), mean in zip((("kvasir-10", 0.1), ("kvasir", 1.0)), means, strict=True)
    ]
    (tmp_path / "fractions-hand-kvasir.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    doc = quality_doc(fractions=fractions, plots=["fractions-hand-kvasir.svg"])
    path = write_json(tmp_path / "quality-hand.json", doc)
    page = build_report([path], tmp_path / "r.html").read_text()
    table = page[page.index('<table class="fractions">'):]
    table = table[:table.index("</table>")]
    assert "<th>10% of the training split</th><th>100% of the training split</th>" in table
    assert "<td>p4</td><td>0.580 [0.560, 0.600]</td><td>0.700 [0.680, 0.720]</td>" in table
    assert page.count('data-kind="fractions"') == 1 and 'data-kind="bench"' not in page


def test_a_study_without_shares_has_no_such_section(tmp_path: Path) -> None:
    path = write_json(tmp_path / "quality-hand.json", quality_doc())
    page = build_report([path], tmp_path / "r.html").read_text()
    assert '<table class="fractions">' not in page and 'id="fractions"' not in page


def test_a_study_with_a_counterpart_plan_shows_each_entry_and_gain_against_it(
        tmp_path: Path) -> None:
    def contrast(mean: float, low: float, high: float) -> dict:
        verdict = "better" if low > 0 else "worse" if high < 0 else "no difference shown"
        return {"diff_mean": mean, "ci_low": low, "ci_high": high, "verdict": verdict,
                "n_seeds": [2, 3], "level": 0.95, "n_images": 6}

    counterpart = {
        "plan": "small", "plan_file": "plans/small.yaml", "note": "", "size": [192, 96],
        "entries": [{"dataset": "kvasir", "entry": "p4", "counterpart": "p4+neg",
                     **contrast(0.05, 0.01, 0.09)}],
        "gains": [{"dataset": "kvasir", "entry": "p4", "baseline": "unet",
                   "counterpart": "p4+neg", "baseline_counterpart": "unet+neg",
                   "here": contrast(0.08, 0.03, 0.13), "there": contrast(0.02, -0.02, 0.06),
                   "change": contrast(0.06, 0.01, 0.11)}],
        "cross": [{"dataset": "kvasir", "tested_on": "cvc", "entry": "p4",
                   "counterpart": "p4+neg", **contrast(-0.04, -0.07, -0.01)}],
    }
    path = write_json(tmp_path / "quality-hand.json", quality_doc(counterpart=counterpart))
    page = build_report([path], tmp_path / "r.html").read_text()
    entries = page[page.index('<table class="counterpart">'):]
    assert "<td>p4+neg</td><td>+0.050 [+0.010, +0.090] higher</td>" in entries
    gains = page[page.index('<table class="counterpart-gains">'):]
    gains = gains[:gains.index("</table>")]
    assert "<td>+0.020 [-0.020, +0.060] no difference shown</td>" in gains
    assert "<td>+0.060 [+0.010, +0.110] grows</td>" in gains
    cross = page[page.index('<table class="counterpart-cross">'):]
    assert "<td>-0.040 [-0.070, -0.010] lower</td>" in cross[:cross.index("</table>")]
    bare = write_json(tmp_path / "quality-bare.json", quality_doc())
    assert 'id="counterpart"' not in build_report([bare], tmp_path / "b.html").read_text()


def test_the_summary_states_how_each_entry_answers_frames_without_a_polyp(
        tmp_path: Path) -> None:
    def stat(mean: float, std: float) -> dict:
        return {"mean": mean, "std": std, "n": 2}

    negatives = {"summary": [
        {"dataset": "kvasir", "entry": entry, "n": 2, "false_positive_rate": stat(fpr, 0.01),
         "frame_sensitivity": stat(sens, 0.02), "frame_specificity": stat(spec, 0.03)}
        for entry, fpr, sens, spec in (("unet", 0.44, 0.90, 0.85), ("p4", 0.56, 0.95, 0.94))]}
    path = write_json(tmp_path / "quality-neg.json", quality_doc(negatives=negatives))
    page = build_report([path], tmp_path / "n.html").read_text()
    table = page[page.index('<table class="summary">'):]
    table = table[:table.index("</table>")]
    assert ("<th>FPR on negatives</th><th>frame sensitivity</th><th>frame specificity</th>"
            in table)
    assert "0.440 ± 0.010" in table and '<td class="best">0.940 ± 0.030</td>' in table
    bare = build_report([write_json(tmp_path / "quality-bare.json", quality_doc())],
                        tmp_path / "b.html").read_text()
    assert "FPR on negatives" not in bare  # evaluations made before negatives: no column
