"""``polypseg serve`` as a real uvicorn process on loopback, and scripts/load_test.py against it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from deploy_helpers import encode, pattern

from scripts import abuse_test, load_test


def request(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.fixture(scope="module")
def server(exports: dict[str, Path]) -> Iterator[str]:
    """``polypseg serve`` on a free loopback port, stopped after the module's tests."""
    args = ["--threads", "1", "--max-bytes", "200kB", "--no-access-log"]
    with abuse_test.serving(exports["torchscript"], args) as (url, _process, _log):
        yield url


def test_real_server_segments_and_refuses_garbage(server: str):
    status, body = request(server + "/v1/segment", encode(pattern(50, 70)))
    assert status == 200
    mask = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (50, 70) and set(np.unique(mask)) <= {0, 255}
    status, body = request(server + "/v1/segment", b"this is not an image" * 10)
    assert status == 415 and b"Traceback" not in body
    status, body = request(server + "/v1/segment", b"\x00" * 250_000)
    assert status == 413
    assert json.loads(request(server + "/healthz")[1]) == {"status": "ok"}


def test_real_server_parallel_requests_are_identical(server: str):
    data = encode(pattern(96, 128, 5))
    expected = request(server + "/v1/segment", data)[1]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: request(server + "/v1/segment", data), range(18)))
    assert all(status == 200 and body == expected for status, body in results)


def test_load_test_script(server: str, tmp_path: Path, capsys):
    image = tmp_path / "img.png"
    image.write_bytes(encode(pattern(64, 64)))
    args = ["--url", server, "--image", str(image), "-n", "12", "-c", "3", "--json"]
    assert load_test.main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] == 12 and summary["errors"] == {}
    assert 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    assert summary["throughput_rps"] > 0


@pytest.mark.parametrize("url", ["http://example.com:8000", "http://10.0.0.1", "ftp://127.0.0.1"])
def test_load_test_refuses_other_hosts(url: str, tmp_path: Path, capsys):
    image = tmp_path / "img.png"
    image.write_bytes(b"x")
    assert load_test.main(["--url", url, "--image", str(image), "-n", "1"]) == 2
    assert "error:" in capsys.readouterr().err
