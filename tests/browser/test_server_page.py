"""The page of ``polypseg serve`` (``GET /``) in Chromium, against the app in uvicorn: a real
Kvasir-SEG image is segmented and shown with its foreground fraction, the rotation slider shows
both predictions, and an oversized or non-image upload shows the server's error; a TIFF is
shown from the server's preview, an EXIF-rotated JPEG upright, the overlay follows its opacity
slider and outline-only toggle, the mask downloads as the server's PNG, and several files make
a strip of results."""

from __future__ import annotations

import dataclasses
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

    from polypseg.deploy.bundle import open_model
    from polypseg.deploy.predict import segment
    from polypseg.deploy.server import ServerSettings, create_app

    bundle = open_model(study / "p4", threads=1)
    # a threshold at the median probability of a test image, so that masks hold both values
    # whatever the tiny model learnt
    median = float(np.median(segment(bundle, [made_image(seed=1)])[0]))
    bundle.input = dataclasses.replace(bundle.input, threshold=median)
    app = create_app(bundle, ServerSettings(max_bytes=MAX_BYTES))
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
    # 400,000 bytes are 390.6 KiB; 40,000,000 pixels the default
    expect(watched.page.locator("#limits")).to_have_text(
        "PNG, JPEG, BMP or TIFF, up to 391 KiB and 40 megapixels each")


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
    save_screenshot(page.screenshot(full_page=True), "server-page-one.png")


def test_page_segments_several_real_images(watched: Watched, server: str) -> None:
    """Four Kvasir-SEG images dropped at once: a strip of four results, each with the
    server's fraction; the first shown and turned by 45 degrees (docs/img/server-page.png)."""
    from playwright.sync_api import expect

    real_image()  # skips without the shared data
    images = sorted((SHARED_KVASIR / "images").glob("*.jpg"))[:4]
    page = watched.page
    open_page(watched, server)
    page.set_input_files("#file", [str(path) for path in images])
    thumbs = page.locator("#strip .thumb")
    expect(thumbs).to_have_count(len(images))
    expect(page.locator("#drop")).to_have_attribute("aria-busy", "false")
    for index, path in enumerate(images):
        _, body = get(server + "/v1/segment?format=json", path.read_bytes())
        fraction = 100 * json.loads(body)["foreground_fraction"]
        expect(thumbs.nth(index)).to_contain_text(f"{fraction:.1f}%")
        assert_not_blank(thumbs.nth(index).locator("canvas").screenshot(), f"thumbnail {index}")
    page.locator("#angle").fill("45")
    page.locator("#angle").dispatch_event("change")
    expect(page.locator("#agreement")).to_have_text(re.compile(r"^[01]\.\d{3} at 45°$"))
    expect(page.locator("#rotation")).to_have_attribute("aria-busy", "false")
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


def made_image(height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    """An RGB test image with polyp-like discs (no pure green anywhere)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([120 + xx * 100 // width, 60 + yy * 60 // height,
                      np.full_like(xx, 70)], axis=-1).astype(np.uint8)  # fmt: skip
    cv2.circle(image, (width // 3, height // 2), min(height, width) // 4, (230, 120, 110), -1)
    cv2.circle(image, (3 * width // 4, height // 3), min(height, width) // 8, (200, 90, 80), -1)
    return cv2.add(image, rng.integers(0, 15, image.shape, dtype=np.uint8))


def write(path: Path, rgb: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def server_mask(server: str, data: bytes) -> np.ndarray:
    status, body = get(server + "/v1/segment", data)
    assert status == 200
    return cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)


def canvas_rgb(page, selector: str) -> np.ndarray:
    """The pixels of a canvas, read in the page."""
    width, height, flat = page.locator(selector).evaluate(
        "c => [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, "
        "c.height).data)]")
    return np.asarray(flat, np.uint8).reshape(height, width, 4)[..., :3]


def segmented(page, path: Path) -> None:
    from playwright.sync_api import expect

    page.set_input_files("#file", str(path))
    expect(page.locator("#rotation")).to_have_attribute("aria-busy", "false")
    expect(page.locator("#result")).to_be_visible()


def test_tiff_is_shown_from_the_server_preview(watched: Watched, server: str,
                                               tmp_path: Path) -> None:
    from playwright.sync_api import expect

    image = made_image()
    tiff = write(tmp_path / "frame.tif", image)
    page = watched.page
    open_page(watched, server)
    page.locator("#outline-only").check()
    segmented(page, tiff)
    expect(page.locator("#shown-from")).to_contain_text("preview")
    assert any(u.endswith("/v1/preview") for u in watched.requests)
    shown = canvas_rgb(page, "#overlay")
    assert shown.shape == image.shape
    # outline only: off the outline the canvas is the TIFF's own pixels
    mask = server_mask(server, tiff.read_bytes())
    interior = cv2.erode(mask, np.ones((5, 5), np.uint8), borderValue=0) > 0
    outside = cv2.dilate(mask, np.ones((5, 5), np.uint8)) == 0
    away = interior | outside
    assert np.abs(shown[away].astype(int) - image[away].astype(int)).max() <= 1
    expect(page.locator("#error")).to_be_hidden()
    assert watched.page_errors == []
    only_local(watched, server)


def test_opacity_and_outline_only_change_the_overlay(watched: Watched, server: str,
                                                     tmp_path: Path) -> None:
    image = made_image(seed=1)
    path = write(tmp_path / "frame.png", image)
    mask = server_mask(server, path.read_bytes()) > 0
    assert 0 < mask.mean() < 1  # the premise: the mask has both values
    page = watched.page
    open_page(watched, server)
    segmented(page, path)

    def green() -> np.ndarray:
        shown = canvas_rgb(page, "#overlay")
        return (shown[..., 0] == 0) & (shown[..., 1] == 255) & (shown[..., 2] == 0)

    page.locator("#opacity").fill("100")
    full = green()
    assert (full == mask).all()  # every mask pixel pure green (1 px outline inside the mask)
    page.locator("#opacity").fill("0")
    edges = green()
    # the outline: mask pixels with a neighbour off the mask (or off the image)
    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), borderValue=0) > 0
    edge_of_mask = mask & ~inner
    assert edges.any() and (edges <= mask).all() and edges.sum() < full.sum()
    assert not (edges & ~edge_of_mask).any()  # only the outline is green
    page.locator("#opacity").fill("100")
    page.locator("#outline-only").check()
    assert (green() == edges).all()  # outline only: the fill is gone whatever the opacity
    assert watched.page_errors == []


def test_download_gives_the_servers_mask(watched: Watched, server: str, tmp_path: Path) -> None:
    path = write(tmp_path / "polyp.png", made_image(seed=2))
    page = watched.page
    open_page(watched, server)
    segmented(page, path)
    with page.expect_download() as info:
        page.locator("#download").click()
    download = info.value
    assert download.suggested_filename == "polyp_mask.png"
    saved = tmp_path / "downloaded.png"
    download.save_as(saved)
    got = cv2.imread(str(saved), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(got, server_mask(server, path.read_bytes()))


def test_exif_rotated_jpeg_is_shown_upright(watched: Watched, server: str,
                                            tmp_path: Path) -> None:
    """Stored 256 x 200 with orientation 6: the page shows 200 x 256, its picture upright
    (red on top, blue below) under the server's upright mask."""
    from PIL import Image

    stored = np.zeros((200, 256, 3), np.uint8)
    stored[:, :128] = (200, 40, 40)  # left half red: on top once turned clockwise
    stored[:, 128:] = (40, 40, 200)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "sideways.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    page = watched.page
    open_page(watched, server)
    page.locator("#outline-only").check()
    segmented(page, path)
    shown = canvas_rgb(page, "#overlay").astype(int)
    assert shown.shape == (256, 200, 3)
    mask = server_mask(server, path.read_bytes())
    assert mask.shape == (256, 200)
    top, bottom = np.median(shown[40:80, 80:120], axis=(0, 1)), np.median(shown[176:216, 80:120],
                                                                           axis=(0, 1))
    assert top[0] > top[2] + 100 and bottom[2] > bottom[0] + 100


def test_several_images_make_a_strip(watched: Watched, server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    first = write(tmp_path / "first.png", made_image(seed=3))
    second = write(tmp_path / "second.jpg", made_image(100, 90, seed=4))
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    page = watched.page
    open_page(watched, server)
    page.set_input_files("#file", [str(first), str(text), str(second)])
    thumbs = page.locator("#strip .thumb")
    expect(thumbs).to_have_count(3)
    expect(page.locator("#drop")).to_have_attribute("aria-busy", "false")
    expect(thumbs.nth(1)).to_have_class(re.compile("failed"))
    expect(thumbs.nth(1)).to_contain_text("415: ")
    expect(page.locator("#error")).to_have_text(re.compile(r"^notes\.txt: 415: "))
    for index, path in ((0, first), (2, second)):
        _, body = get(server + "/v1/segment?format=json", path.read_bytes())
        fraction = 100 * json.loads(body)["foreground_fraction"]
        expect(thumbs.nth(index)).to_contain_text(f"{fraction:.1f}%")
    expect(page.locator("#name")).to_have_text("first.png")  # the first result is selected
    thumbs.nth(2).click()
    expect(page.locator("#name")).to_have_text("second.jpg")
    expect(page.locator("#imagesize")).to_have_text("90×100 px")
    expect(thumbs.nth(2)).to_have_attribute("aria-pressed", "true")
    expect(thumbs.nth(0)).to_have_attribute("aria-pressed", "false")
    assert watched.page_errors == []
    only_local(watched, server)
