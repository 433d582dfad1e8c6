"""Admission of ``POST /v1/segment`` in-process: bodies counted against their own quota and
upload places per client, 503s with ``Retry-After``, and the work memory reserved for an image
covering what decoding really holds."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from deploy_helpers import encode, pattern

from polypseg.deploy.bundle import open_model
from polypseg.deploy.memory import ByteQuota, body_buffer, exact_copy
from polypseg.deploy.server import ServerSettings, create_app


def _client(app: object) -> object:
    with warnings.catch_warnings():  # starlette's TestClient warns about httpx at import
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(app, raise_server_exceptions=False)


def test_bodies_past_the_body_quota_get_503_with_retry_after(exports: dict[str, Path]) -> None:
    image = encode(pattern(60, 80))
    settings = ServerSettings(max_bytes=len(image) * 4, max_body_memory=len(image) - 1)
    app = create_app(open_model(exports["onnx"]), settings, warm_up=False)
    engine = app.state.engine
    with _client(app) as client:
        refused = client.post("/v1/segment", content=image)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
        assert engine.bodies.used == 0  # given back
        engine.bodies.capacity = len(image)
        assert client.post("/v1/segment", content=image).status_code == 200
        multipart = client.post("/v1/segment", files={"file": ("a.png", image, "image/png")})
        assert multipart.status_code == 503  # its copy of the file counts too
        engine.bodies.capacity = 2 * len(image) + 4096
        multipart = client.post("/v1/segment", files={"file": ("a.png", image, "image/png")})
        assert multipart.status_code == 200
    assert engine.bodies.used == 0 and engine.bodies.peak > len(image)
    assert engine.pending == 0 and engine.uploads == {}


def test_upload_places_are_bounded_in_all_and_per_client(exports: dict[str, Path]) -> None:
    from starlette.exceptions import HTTPException

    settings = ServerSettings(max_uploads=3, max_uploads_per_client=2)
    engine = create_app(open_model(exports["onnx"]), settings, warm_up=False).state.engine
    with engine.uploading("10.0.0.1"), engine.uploading("10.0.0.1"):
        with pytest.raises(HTTPException) as mine, engine.uploading("10.0.0.1"):
            pass
        assert mine.value.status_code == 503 and "this address" in str(mine.value.detail)
        with engine.uploading("10.0.0.2"):
            with pytest.raises(HTTPException) as full, engine.uploading("10.0.0.3"):
                pass
            assert full.value.status_code == 503
    assert engine.uploads == {}
    assert engine.pending == 0  # an upload holds no pending place


_MEASURE_DECODE = """
import json, sys
import cv2, numpy as np
from polypseg.deploy.imageio import decode_pixels, read_header
from polypseg.deploy.memory import transient_bytes
side = int(sys.argv[1])
pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype="uint8")
data = cv2.imencode(".png", pixels)[1].tobytes()
header = read_header(data)
decode_pixels(data, header)  # once, so that one-time allocations are not counted
measured = transient_bytes(lambda: decode_pixels(data, header))
print(json.dumps({"measured": measured, "work_bytes": header.work_bytes}))
"""


def test_the_reservation_covers_what_decoding_a_large_png_really_holds() -> None:
    """OpenCV's PNG decoder holds the image twice at its peak (its own buffer, then the
    converted array; the in-place BGR-to-RGB swap copies too): the header's work bytes must
    cover the measured peak (before: 5 bytes a pixel were reserved, 6 held). Measured in a
    fresh process: in a long test session freed memory is reused and the resident set does
    not grow, so the peak would read as 0."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _MEASURE_DECODE, "2400"], capture_output=True,
                          text=True, timeout=120, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    measured, work_bytes = result["measured"], result["work_bytes"]
    if measured is None:
        pytest.skip("needs Linux /proc to measure")
    assert measured <= work_bytes, (measured >> 20, work_bytes >> 20)
    assert work_bytes <= 1.5 * measured  # and does not overstate it either


def test_body_buffers_hold_exactly_the_body_and_close() -> None:
    quota = ByteQuota(10)
    assert quota.take(6) and not quota.take(5) and quota.take(4)
    quota.give(10)
    assert quota.used == 0 and quota.peak == 10
    buffer = body_buffer(1 << 20)
    buffer.write(b"\x89PNG\r\n\x1a\n" + b"x" * 100)
    exact = exact_copy(buffer, 108)
    assert len(exact) == 108 and exact[:8] == b"\x89PNG\r\n\x1a\n" and buffer.closed
    exact.close()
