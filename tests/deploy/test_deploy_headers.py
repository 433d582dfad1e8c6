"""Browser-side defences of the HTTP API in-process: security headers on every answer, the
page's nonce-based Content-Security-Policy, and the ``Host`` check against DNS rebinding."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_helpers import encode, pattern

from polypseg.deploy.bundle import open_model
from polypseg.deploy.headers import allowed_host_names, host_name
from polypseg.deploy.server import ServerSettings, create_app


def _test_client(app: object, **kwargs: object) -> object:
    with warnings.catch_warnings():  # starlette's TestClient warns about httpx at import
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(app, raise_server_exceptions=False, **kwargs)


@pytest.fixture(scope="module")
def client(exports: dict[str, Path]) -> Iterator[object]:
    settings = ServerSettings(max_bytes=200_000, allowed_hosts=frozenset({"localhost"}))
    app = create_app(open_model(exports["onnx"]), settings, warm_up=False)

    @app.get("/boom")  # an unexpected error: Starlette's outermost layer answers it
    def boom() -> None:
        raise RuntimeError("bug")

    with _test_client(app, base_url="http://localhost") as test_client:
        yield test_client


def assert_guarded(response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    policy = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy


def test_every_answer_carries_the_security_headers(client) -> None:
    answers = [
        client.get("/healthz"),
        client.get("/v1/model"),
        client.get("/no-such-route"),
        client.post("/v1/segment", content=encode(pattern(40, 50))),
        client.post("/v1/segment", content=b"not an image"),
        client.post("/v1/segment", content=b"x" * 300_000),
        client.post("/v1/segment?threshold=7", content=b"x"),
        client.get("/boom"),
        client.get("/"),
    ]
    assert [a.status_code for a in answers] == [200, 200, 404, 200, 415, 413, 422, 500, 200]
    for answer in answers:
        assert_guarded(answer)
    assert answers[0].headers["content-security-policy"].startswith("default-src 'none'")


def test_the_page_runs_its_own_script_and_style_by_nonce_and_nothing_else(client) -> None:
    first, second = client.get("/"), client.get("/")
    nonces = []
    for page in (first, second):
        policy = page.headers["content-security-policy"]
        script = re.search(r"script-src 'nonce-([^']+)'", policy)
        style = re.search(r"style-src 'nonce-([^']+)'", policy)
        assert script and style and script[1] == style[1], policy
        nonce = script[1]
        assert f'<script nonce="{nonce}">' in page.text and f'<style nonce="{nonce}">' in page.text
        assert page.text.count("<script") == 1 and "{{" not in page.text
        assert "http-equiv" not in page.text  # the header is the policy, not a meta tag
        nonces.append(nonce)
    assert nonces[0] != nonces[1] and len(nonces[0]) >= 16


def test_a_foreign_host_name_gets_421(client) -> None:
    refused = client.get("/healthz", headers={"Host": "rebound.evil.example"})
    assert refused.status_code == 421 and refused.json()["status"] == 421
    assert "rebound" not in refused.text  # not echoed
    assert_guarded(refused)
    for host in ("localhost:8000", "LOCALHOST.", "127.0.0.1:9", "[::1]:8000", "10.1.2.3"):
        assert client.get("/healthz", headers={"Host": host}).status_code == 200, host


@pytest.mark.parametrize(
    ("bind", "extra", "accepted", "refused"),
    [
        ("127.0.0.1", [], {"localhost"}, {"evil.example", "myhost"}),
        ("::1", ["polyp.lan"], {"localhost", "polyp.lan"}, {"evil.example"}),
        ("localhost", [], {"localhost"}, {"evil.example"}),
        ("192.0.2.10", [], set(), {"localhost", "evil.example"}),
    ],
)
def test_allowed_host_names_default_to_the_bound_ones(bind, extra, accepted, refused) -> None:
    names = allowed_host_names(bind, extra)
    assert names is not None and accepted <= names and not (refused & names), names


def test_allowed_host_star_accepts_any_and_host_names_are_normalised() -> None:
    assert allowed_host_names("127.0.0.1", ["*"]) is None
    assert host_name("Example.ORG.:8080") == "example.org"
    assert host_name("[::1]:8000") == "::1"
    assert host_name("::1") == "::1"


def test_swagger_ui_keeps_its_cdn_assets_and_the_other_headers(exports: dict[str, Path]) -> None:
    """``serve --docs``: the API's policy would block Swagger UI's script and style (a CDN's),
    so its page alone goes without one; it still may not be framed or sniffed."""
    app = create_app(open_model(exports["onnx"]), ServerSettings(docs=True), warm_up=False)
    with _test_client(app) as client:
        docs, schema = client.get("/docs"), client.get("/openapi.json")
    assert docs.status_code == 200 and "content-security-policy" not in docs.headers
    assert docs.headers["x-frame-options"] == "DENY"
    assert docs.headers["x-content-type-options"] == "nosniff"
    assert_guarded(schema)
