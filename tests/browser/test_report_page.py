"""``polypseg report`` pages opened in Chromium: they render with no console error, load nothing
from the network, and every plot and gallery picture is there and not blank.

Two reports: the demo's (run folders and a sweep) and the one ``polypseg bench quality``
writes next to its tables (a tiny two-seed plan, trained now)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from browser_helpers import SHARED_KVASIR, Watched, assert_not_blank, save_screenshot


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


def test_demo_report_renders(watched: Watched, study: Path) -> None:
    report = study / "report.html"
    open_report(watched, report)
    page = watched.page
    models = page.locator("article.model")
    assert models.count() == 2  # unet and p4
    assert page.locator("table.summary tbody tr").count() == 2
    check_images(watched, "figure.plot img", 2)  # Dice vs angle, training curves
    # per model: 3 least consistent images x 4 pictures, 3 lowest-Dice images x 3 pictures
    check_images(watched, "figure.tile img", 2 * (3 * 4 + 3 * 3))
    assert watched.console_errors == [] and watched.page_errors == []
    page.evaluate("window.scrollTo(0, 0)")
    save_screenshot(page.screenshot(), "report-summary.png")
    gallery = page.locator("article.model").first
    gallery.scroll_into_view_if_needed()
    save_screenshot(gallery.screenshot(), "report-gallery.png")


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
    assert page.locator("article.model").count() == 3
    check_images(watched, "figure.tile img", 3 * (3 * 4 + 3 * 3))
    runs = page.locator("#provenance details")  # one per run shown (2 or 3: best seeds)
    assert runs.count() >= 2
    for i in range(runs.count()):
        text = runs.nth(i).text_content()
        assert "split sha256" in text and "polypseg train --model" in text, text
    assert watched.console_errors == [] and watched.page_errors == []
