"""The findings box: generated from the study JSON, each entry against the references with
its interval, the cost ratio, the cross-dataset result; stalled seeds named."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_helpers import quality_doc, write_json

from polypseg.report.build import build_report
from polypseg.report.findings import (
    findings_markdown,
    sentences,
    study_findings,
    table_rows,
)


def _doc() -> dict:
    comparisons = [
        {"dataset": "kvasir", "entry": "p4", "baseline": "unet", "diff_mean": 0.085,
         "ci_low": 0.021, "ci_high": 0.149, "level": 0.9, "verdict": "better"},
        {"dataset": "kvasir", "entry": "p4", "baseline": "unet-wide", "diff_mean": -0.01,
         "ci_low": -0.05, "ci_high": 0.03, "level": 0.9, "verdict": "no difference shown"},
    ]
    cross = [{"entry": "unet", "trained_on": "kvasir", "dataset": "cvc",
              "metrics": {"dice": {"mean": 0.5}}},
             {"entry": "p4", "trained_on": "kvasir", "dataset": "cvc",
              "metrics": {"dice": {"mean": 0.6}}}]
    doc = quality_doc(comparisons=comparisons, cross_summary=cross)
    doc["results"][3]["convergence"] = {"stalled": True}  # p4, seed 1
    return doc


def test_each_entry_against_the_references_with_its_interval_and_cost() -> None:
    findings = study_findings(_doc())
    header, rows = table_rows(findings)
    assert header == ["Entry", "Kvasir-SEG Dice", "vs unet", "vs unet-wide",
                      "Kvasir-SEG to cvc", "Train cost"]
    p4 = next(r for r in rows if r[0] == "p4")
    assert p4[1] == "0.705 (stalled seed)"  # mean of 0.70 and 0.71
    assert p4[2] == "+0.085 [+0.021, +0.149] better" and p4[3] == "-0.010 [-0.050, +0.030]"
    assert p4[4] == "0.600" and p4[5] == "4.00x"  # MACs 8M against unet's 2M, no cost file
    unet = next(r for r in rows if r[0] == "unet")
    assert unet[2] == "(reference)" and unet[5] == "1.00x"


def test_the_words_say_what_the_intervals_show() -> None:
    lines = sentences(study_findings(_doc()))
    assert lines[0].startswith("On Kvasir-SEG: p4 beats unet (Dice +0.085); no entry beats "
                               "unet-wide.")
    assert "90% interval" in lines[0] and "Stalled: p4 seed 1" in lines[0]
    assert "p4 scores best (0.600; unet 0.500)" in lines[1]
    assert lines[2].startswith("Cost, multiply-accumulates per image relative to unet: p4 4.0x")


def test_a_measured_cost_wins_over_macs() -> None:
    cost = {"models": [{"name": "unet", "ratio": 1.0}, {"name": "p4", "ratio": 2.28}]}
    findings = study_findings(_doc(), cost)
    assert findings.cost["p4"] == pytest.approx(2.28)
    assert "training-step time" in findings.cost_kind


def test_the_report_opens_with_the_findings(tmp_path: Path) -> None:
    path = write_json(tmp_path / "quality-hand.json", _doc())
    page = build_report([path], tmp_path / "r.html", gallery=0).read_text()
    assert page.index('<section id="findings">') < page.index('<section id="summary">')
    assert ('<td class="better">+0.085<br><small>[+0.021, +0.149] better</small></td>'
            in page)
    # the stalled entry is marked in the summary and never bold
    summary = page[page.index('<table class="summary">'):]
    assert "(1 seed stalled)" in summary
    p4_row = summary[summary.index("p4 <span"):].split("</tr>")[0]
    assert 'class="best"' not in p4_row


def test_the_readme_holds_the_findings_of_the_committed_study() -> None:
    from polypseg.report.findings import load_findings

    repo = Path(__file__).resolve().parents[2]
    text = (repo / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- findings:start -->\n", "<!-- findings:end -->"
    box = text[text.index(start) + len(start):text.index(end)]
    assert box == findings_markdown(load_findings(repo / "results" / "quality-cpu.json")), (
        "README findings out of date: python scripts/readme_findings.py")
