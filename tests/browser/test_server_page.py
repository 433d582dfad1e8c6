"""The page of ``polypseg serve`` (``GET /``) in Chromium, against the app in uvicorn: a real
Kvasir-SEG image is segmented and shown with its foreground fraction, the rotation slider shows
both predictions, and an oversized or non-image upload shows the server's error."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from browser_helpers import SHARED_KVASIR, Watched, assert_not_blank, save_screenshot

MAX_BYTES = 400_000


def get(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.fixture(scope="module")
def server(study: Path) -> Iterator[str]:
    """The app of ``polypseg serve`` for the study's p4 run, in uvicorn on an OS-chosen
    loopback port (a thread of this process), at most ``MAX_BYTES`` per request."""
    import uvicorn

    from polypseg.deploy.bundle import load_bundle
    from polypseg.deploy.server import ServerSettings, create_app

    app = create_app(load_bundle(study / "p4", threads=1), ServerSettings(max_bytes=MAX_BYTES))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.1)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def real_image() -> Path:
    images = sorted((SHARED_KVASIR / "images").glob("*.jpg")) if SHARED_KVASIR.is_dir() else []
    if not images:
        pytest.skip("shared Kvasir-SEG images are absent (../shared/data)")
    return images[0]


def open_page(watched: Watched, server: str) -> None:
    from playwright.sync_api import expect

    watched.page.goto(server + "/")
    expect(watched.page.locator("#model")).to_contain_text("model ")
    expect(watched.page.locator("#limits")).to_contain_text(f"up to {MAX_BYTES} bytes")


def only_local(watched: Watched, server: str) -> None:
    foreign = [u for u in watched.requests if not u.startswith((server + "/", "data:", "blob:"))]
    assert foreign == [], f"the page requested {foreign}"


def test_page_segments_a_real_image(watched: Watched, server: str) -> None:
    from playwright.sync_api import expect

    image = real_image()
    page = watched.page
    open_page(watched, server)
    page.set_input_files("#file", str(image))
    expect(page.locator("#rotation")).to_have_attribute("aria-busy", "false")
    # the fraction the page shows is the server's for this image
    status, body = get(server + "/v1/segment?format=json", image.read_bytes())
    assert status == 200
    expected = 100 * json.loads(body)["foreground_fraction"]
    expect(page.locator("#fraction")).to_have_text(f"{expected:.1f}%")
    expect(page.locator("#latency")).to_have_text(re.compile(r"^\d+ ms$"))
    height, width = cv2.imread(str(image)).shape[:2]
    expect(page.locator("#imagesize")).to_have_text(f"{width}×{height} px")
    overlay = page.locator("#overlay")
    assert overlay.evaluate("c => [c.width, c.height]") == [width, height]
    assert_not_blank(overlay.screenshot(), "the overlay")
    expect(page.locator("#agreement")).to_have_text(re.compile(r"^\d\.\d{3} at 0°$"))

    page.locator("#angle").fill("45")
    page.locator("#angle").dispatch_event("change")
    expect(page.locator("#agreement")).to_have_text(re.compile(r"^[01]\.\d{3} at 45°$"))
    expect(page.locator("#rotation")).to_have_attribute("aria-busy", "false")
    for canvas in ("#rotated-pred", "#pred-rotated"):
        assert_not_blank(page.locator(canvas).screenshot(), canvas)
    assert float(page.locator("#agreement").inner_text().split()[0]) <= 1.0
    expect(page.locator("#error")).to_be_hidden()
    assert watched.console_errors == [] and watched.page_errors == []
    only_local(watched, server)
    save_screenshot(page.screenshot(full_page=True), "server-page.png")


def test_page_shows_the_server_errors(watched: Watched, server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    noise = np.random.default_rng(0).integers(0, 256, (600, 600, 3), dtype=np.uint8)
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), noise)
    assert big.stat().st_size > MAX_BYTES
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n" * 50)
    page = watched.page
    open_page(watched, server)

    page.set_input_files("#file", str(big))
    # the server may answer before the body is all sent (a client like urllib then sees a
    # broken pipe instead of the answer), so its words are not fetched separately here
    expect(page.locator("#error")).to_have_text(re.compile(r"^413: \S.*"))
    expect(page.locator("#result")).to_be_hidden()
    status, body = get(server + "/v1/segment", text.read_bytes())
    assert status == 415
    page.set_input_files("#file", str(text))
    expect(page.locator("#error")).to_have_text(f"415: {json.loads(body)['error']}")
    # Chromium logs each 4xx answer as a failed resource load; nothing else may go wrong
    assert all(re.search(r"status of 41[35]", e) for e in watched.console_errors), \
        watched.console_errors
    assert watched.page_errors == []
    only_local(watched, server)
