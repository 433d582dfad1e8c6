"""``GET /``: the browser page is served, self-contained, and points only at the API.

What the page does in a browser is tested in tests/browser/test_server_page.py (Chromium)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from polypseg.deploy.bundle import open_model
from polypseg.deploy.page import NONCE_SLOT, page_html
from polypseg.deploy.server import create_app


@pytest.fixture(scope="module")
def client(exports: dict[str, Path]) -> Iterator[object]:
    with warnings.catch_warnings():  # starlette's TestClient warns about httpx at import
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    app = create_app(open_model(exports["onnx"]), warm_up=False)
    with TestClient(app) as test_client:
        yield test_client


def test_page_is_served_as_html(client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    nonce = re.search(r"script-src 'nonce-([A-Za-z0-9_-]+)'", policy)
    assert nonce is not None, response.headers
    assert response.text == page_html().replace(NONCE_SLOT, f'nonce="{nonce[1]}"')
    assert "/" not in client.get("/openapi.json").json()["paths"]  # not part of the API


def test_page_loads_nothing_from_elsewhere() -> None:
    html = page_html()
    assert "<script src" not in html and "<link rel=\"stylesheet\"" not in html
    # every URL the page names is relative to the server (the API), data: or blob:
    urls = re.findall(r"(?:fetch\(|src=|href=)\"([^\"]*)\"", html)
    assert set(urls) <= {"v1/segment", "v1/model", "v1/preview", "data:,"}, urls
    assert not re.search(r"\son[a-z]+=", html)  # no inline handlers (a CSP without
    assert html.count("<script") == 1  # 'unsafe-inline' allows one nonce'd script)
    assert not re.search(r"https?://", html.replace("http-equiv", ""))
    assert "Content-Security-Policy" not in html  # the header says it (with a nonce)
