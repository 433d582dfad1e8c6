"""``GET /``: a small self-contained browser page over ``POST /v1/segment``.

The page (``page.html``, shipped as package data; one inline script and one inline style,
nothing loaded from elsewhere) takes one or more dropped or chosen images, posts each one's
bytes to ``v1/segment`` and shows a strip of results; the one selected is shown large with the
mask on the image (a fill whose opacity a slider sets, or its outline only), its foreground
fraction and latency, and a button that downloads its mask PNG. An image the browser cannot
draw (TIFF) is shown from the server's PNG preview (``v1/preview``). Limits read in human
units (10 MiB, 40 megapixels). A rotation slider turns the selected image in the browser
(counter-clockwise, corners filled with the model's mean colour), sends it again, and shows
the prediction on the rotated image beside the 0-degree prediction rotated, with their Dice
inside the inscribed disc. Errors of the API (413, 415, 422, ...) are shown as the server
words them. Handlers are attached with ``addEventListener`` (no inline handler attributes).

Each answer carries a fresh nonce in the ``nonce`` attribute of the page's ``<script>`` and
``<style>`` and in its ``Content-Security-Policy`` header
(:func:`polypseg.deploy.headers.page_csp`), so those two run and no injected inline code does.
"""

from __future__ import annotations

import secrets
from functools import cache
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from polypseg.deploy.headers import page_csp

#: What the page's ``<script>`` and ``<style>`` tags hold in place of their nonce.
NONCE_SLOT = 'nonce="{{CSP_NONCE}}"'


@cache
def page_html() -> str:
    """The page's HTML text, with :data:`NONCE_SLOT` where the nonce goes."""
    return resources.files("polypseg.deploy").joinpath("page.html").read_text(encoding="utf-8")


def register(app: FastAPI) -> None:
    """Add ``GET /`` (the page) to ``app``; kept out of the OpenAPI schema."""

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        """The browser page."""
        html, nonce = page_with_nonce()
        headers = {"Cache-Control": "no-cache", "Content-Security-Policy": page_csp(nonce)}
        return HTMLResponse(html, headers=headers)


def page_with_nonce() -> tuple[str, str]:
    """``(html, nonce)``: the page with a fresh random nonce in its script and style tags."""
    nonce = secrets.token_urlsafe(18)
    return page_html().replace(NONCE_SLOT, f'nonce="{nonce}"'), nonce
