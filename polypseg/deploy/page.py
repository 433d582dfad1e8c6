"""``GET /``: a small self-contained browser page over ``POST /v1/segment``.

The page (``page.html``, shipped as package data; inline script and style, nothing loaded from
elsewhere) takes a dropped or chosen image, posts its bytes to ``v1/segment`` and shows the
mask tinted on the image with the foreground fraction and the latency. A rotation slider turns
the image in the browser (counter-clockwise, corners filled with the model's mean colour),
sends it again, and shows the prediction on the rotated image beside the 0-degree prediction
rotated, with their Dice inside the inscribed disc. Errors of the API (413, 415, 422, ...) are
shown as the server words them.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse


@cache
def page_html() -> str:
    """The page's HTML text."""
    return resources.files("polypseg.deploy").joinpath("page.html").read_text(encoding="utf-8")


def register(app: FastAPI) -> None:
    """Add ``GET /`` (the page) to ``app``; kept out of the OpenAPI schema."""

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        """The browser page."""
        return HTMLResponse(page_html(), headers={"Cache-Control": "no-cache"})
