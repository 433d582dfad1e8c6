"""Fixtures of the browser tests: headless Chromium (Debian's ``chromium`` package) driven by
Playwright for Python with that system binary, and a small trained study to look at.

The tests skip, saying why, when Playwright or the browser is missing, except in CI (``CI``
set), which installs both (``tests/browser/install.sh``, called by ``.ci/run``) and where a
missing browser fails them. Environment:

* ``POLYPSEG_CHROMIUM``: the browser binary (default: ``chromium`` on PATH);
* ``POLYPSEG_SCREENSHOTS=DIR``: also save the screenshots the tests take into DIR (the README's
  are made this way);
* ``POLYPSEG_BROWSER_STUDY=DIR``: look at a finished demo folder (``polypseg demo --out DIR``)
  instead of training a tiny one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import SHARED_KVASIR, Watched

#: Flags that keep a headless Chromium quiet and offline in a container (no sandbox as root,
#: no GPU, no background downloads or sync); Playwright adds --headless and a fresh profile.
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_binary() -> str | None:
    """The browser to drive: ``$POLYPSEG_CHROMIUM`` or ``chromium`` on PATH."""
    given = os.environ.get("POLYPSEG_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _missing(reason: str) -> None:
    """Skip for want of the browser; in CI (``CI`` set), where it is installed, fail."""
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium per browser test module; closed after it, since Playwright's sync
    API runs an event loop in this thread that would break later asyncio.run() calls."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    binary = chromium_binary()
    if binary is None:
        _missing("chromium is not installed (as root: bash tests/browser/install.sh)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=binary, args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture()
def watched(browser: Any) -> Iterator[Watched]:
    """A fresh page (1280 x 900) whose console errors, page errors and requests are recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(60_000)
    record = Watched(page)
    page.on("console", record.on_console)
    page.on("pageerror", lambda error: record.page_errors.append(str(error)))
    page.on("request", lambda request: record.requests.append(request.url))
    try:
        yield record
    finally:
        context.close()


@pytest.fixture(scope="session")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo folder with ``report.html``: the given one, or two tiny models trained now on
    Kvasir-SEG (synthetic polyps when the shared data is absent)."""
    given = os.environ.get("POLYPSEG_BROWSER_STUDY")
    if given:
        folder = Path(given)
        if not (folder / "report.html").is_file():
            pytest.fail(f"POLYPSEG_BROWSER_STUDY={given}: no report.html there (run polypseg "
                        "demo --out DIR first)")
        return folder
    from polypseg.demo import DemoSettings, run_demo

    real = (SHARED_KVASIR / "images").is_dir()
    out = tmp_path_factory.mktemp("study") / "demo"
    run_demo(DemoSettings(
        out=out, data=SHARED_KVASIR if real else None, synthetic=not real, size=32, depth=2,
        epochs=1, batch_size=4, n_train=8, n_val=4, n_test=6, n_sweep=4,
        models=(("unet", 4), ("p4", 2)), angles=[0.0, 30.0, 45.0, 90.0], progress=False,
        n_synthetic=40,
    ))
    return out
