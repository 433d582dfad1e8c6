"""``polypseg report`` pages opened in Chromium: they render with no console error, load nothing
from the network, every plot and gallery picture is there and not blank, no two texts of a plot
overlap and no legend covers an axes (read from the SVG's text boxes, not by eye), and no name
in the gallery wraps.

Three reports: the demo's (run folders and a sweep), the one ``polypseg bench quality`` writes
next to its tables (a tiny two-seed plan, trained now), and the committed CPU study's, as a
fresh clone makes it (its data found by dataset key in ``../shared/data``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from browser_helpers import (
    REPO,
    SHARED_KVASIR,
    Watched,
    assert_not_blank,
    plot_collisions,
    save_screenshot,
)


@pytest.fixture(scope="module")
def bench_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``quality-browser.html`` of a plan of unet, unet+tta and p4, two seeds, 1 epoch."""
    from polypseg.bench.plan import load_plan
    from polypseg.bench.quality import run_quality
    from polypseg.report.build import write_quality_report
    from polypseg.training.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("bench")
    data = SHARED_KVASIR if (SHARED_KVASIR / "images").is_dir() else make_synthetic(
        root / "Kvasir-SEG", n=40)
    plan = {
        "name": "browser", "reduced": True, "size": 32, "depth": 2, "epochs": 1,
        "batch_size": 4, "lr": 0.002, "seeds": [0, 1], "angles": "0:360:45",
        "limit_train": 8, "limit_val": 4, "limit_test": 6, "sweep_limit": 4,
        "out": "results", "runs": "runs", "datasets": {"kvasir": {"data_dir": str(data)}},
        "entries": [{"name": "unet", "variant": "unet", "width": 4},
                    {"name": "unet+tta", "from": "unet", "tta": "rot90"},
                    {"name": "p4", "variant": "p4", "match": "unet"}],
    }
    (root / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    outcome = run_quality(load_plan(root / "plan.yaml", root=root))
    assert not outcome.failed, outcome.failed
    results = root / "results" / "quality-browser.json"
    assert results in outcome.written
    # what `polypseg bench quality` does after the run (bench never imports report)
    return write_quality_report(results, results.with_suffix(".html"))


def open_report(watched: Watched, path: Path) -> None:
    """Load the report; nothing but the file itself and data: URIs may be requested."""
    watched.page.goto(path.resolve().as_uri())
    watched.page.wait_for_load_state("load")
    foreign = [u for u in watched.requests if not u.startswith(("file:", "data:"))]
    assert foreign == [], f"the report requested {foreign}"


def check_images(watched: Watched, selector: str, expected: int) -> None:
    """``expected`` images match ``selector``; each decoded and, on screen, not blank."""
    images = watched.page.locator(selector)
    assert images.count() == expected, f"{images.count()} {selector}, expected {expected}"
    for i in range(expected):
        image = images.nth(i)
        image.scroll_into_view_if_needed()
        assert image.evaluate("img => img.complete && img.naturalWidth > 0"), f"{selector} {i}"
        assert_not_blank(image.screenshot(), f"{selector} #{i} ({image.get_attribute('alt')})")


def check_gallery(watched: Watched, models: int) -> None:
    """Every gallery row shows ``models`` models, each name on one line."""
    page = watched.page
    rows = page.locator("article.compare div.row")
    assert rows.count() > 0
    for i in range(rows.count()):
        names = rows.nth(i).locator("figure.tile .name")
        shown = [n for n in names.all_inner_texts() if n not in ("input", "ground truth")]
        assert len(shown) == models and len(set(shown)) == models, shown
    wrapped = page.evaluate("""() => [...document.querySelectorAll(
        'figure.tile .name, .row .label b, td:first-child')]
        .filter(e => {  // one box per line the text takes
            const range = document.createRange();
            range.selectNodeContents(e);
            const boxes = [...range.getClientRects()].filter(r => r.width > 0)
                .sort((a, b) => a.top - b.top);
            // a box entirely below the first line's bottom starts another line
            return boxes.some(r => r.top >= boxes[0].bottom - 1); })
        .map(e => e.textContent)""")
    assert wrapped == [], f"names wrap: {wrapped}"


def check_plots(watched: Watched) -> None:
    """No plot of the page has overlapping texts or a legend over an axes."""
    sources = watched.page.locator("figure.plot img").evaluate_all(
        "imgs => imgs.map(i => [i.alt, i.src])")
    assert sources
    for alt, src in sources:
        if src.startswith("data:image/svg+xml"):
            problems = plot_collisions(watched.page.context, src)
            assert problems == [], f"{alt}: {problems}"


def test_demo_report_renders(watched: Watched, study: Path) -> None:
    report = study / "report.html"
    open_report(watched, report)
    page = watched.page
    assert page.locator("article.compare").count() == 1  # one dataset: unet and p4 together
    assert page.locator("table.summary tbody tr").count() == 2
    check_images(watched, "figure.plot img", 2)  # Dice vs angle, training curves
    check_images(watched, "figure.tile img", page.locator("figure.tile img").count())
    check_gallery(watched, 2)
    key = page.locator("article.compare .key").last.inner_text()
    assert "only at 0°" in key and "only on the turned input" in key and "both" in key
    assert watched.console_errors == [] and watched.page_errors == []
    check_plots(watched)


def test_bench_report_renders(watched: Watched, bench_report: Path) -> None:
    open_report(watched, bench_report)
    page = watched.page
    assert "REDUCED plan" in page.locator("header").inner_text()
    rows = page.locator("table.summary tbody tr")
    assert rows.count() == 3  # unet, unet+tta, p4 on one dataset
    for i in range(3):  # two seeds: mean ± std, and n says so
        cells = rows.nth(i).locator("td")
        assert "±" in cells.nth(3).inner_text() and cells.last.inner_text() == "2 seeds"
    # the bench's Dice vs angle, training curves (and whatever else it plotted, e.g. cost)
    assert page.locator('figure.plot[data-kind="sweep"]').count() == 1
    assert page.locator('figure.plot[data-kind="training"]').count() == 1
    check_images(watched, "figure.plot img", page.locator("figure.plot img").count())
    assert page.locator("#findings table.findings tbody tr").count() == 3
    assert page.locator("article.compare").count() == 1
    check_images(watched, "figure.tile img", page.locator("figure.tile img").count())
    check_gallery(watched, 3)
    check_plots(watched)
    runs = page.locator("#provenance details")  # one per run shown (2 or 3: best seeds)
    assert runs.count() >= 2
    for i in range(runs.count()):
        text = runs.nth(i).text_content()
        assert "split sha256" in text and "polypseg train --model" in text, text
    assert watched.console_errors == [] and watched.page_errors == []


@pytest.fixture(scope="module")
def study_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``polypseg report results/quality-cpu.json`` as on a fresh clone: nothing but the
    committed results and ``../shared/data`` beside the clone (one image per gallery row)."""
    from polypseg.cli import main

    if not all((REPO.parent / "shared" / "data" / name / "images").is_dir()
               for name in ("Kvasir-SEG", "CVC-ClinicDB")):
        pytest.skip("the shared datasets are not beside the clone (../shared/data)")
    out = tmp_path_factory.mktemp("study-report") / "cpu.html"
    assert main(["report", str(REPO / "results" / "quality-cpu.json"), "--out", str(out),
                 "--gallery", "1"]) == 0
    return out


def test_the_committed_study_report_has_every_gallery(watched: Watched,
                                                      study_report: Path) -> None:
    open_report(watched, study_report)
    page = watched.page
    assert "not found" not in page.locator("#gallery").inner_text()
    galleries = page.locator("article.compare")
    assert galleries.count() == 2  # Kvasir-SEG and CVC-ClinicDB, ten models each
    check_gallery(watched, 10)
    # the findings come first and name both references for every other entry
    assert page.locator("section").first.get_attribute("id") == "findings"
    assert page.locator("#findings table.findings tbody tr").count() == 10
    stalled = page.locator("table.summary td:first-child", has_text="stalled")
    assert stalled.count() == 1 and "se2n12" in stalled.inner_text()
    check_images(watched, "figure.tile img", page.locator("figure.tile img").count())
    check_plots(watched)
    assert watched.console_errors == [] and watched.page_errors == []
    # the screenshots of docs/report.md: the findings, and one dataset's gallery
    page.evaluate("window.scrollTo(0, 0)")
    save_screenshot(page.screenshot(), "report-summary.png")
    gallery = galleries.first
    gallery.scroll_into_view_if_needed()
    save_screenshot(gallery.screenshot(), "report-gallery.png", width=1280)
