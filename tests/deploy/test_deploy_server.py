"""The HTTP API in-process (FastAPI TestClient): outputs, limits, errors, concurrency."""

from __future__ import annotations

import io
import json
import struct
import warnings
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from deploy_helpers import encode, pattern, real_image
from PIL import Image

from polypseg.deploy.bundle import open_model
from polypseg.deploy.server import ServerSettings, create_app

MAX_BYTES = 300_000


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny, well-formed PNG whose header claims ``width x height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def gif_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(buffer, format="GIF")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.fixture(scope="module", params=["torchscript", "onnx"])
def client(request: pytest.FixtureRequest, exports: dict[str, Path]) -> Iterator[object]:
    with warnings.catch_warnings():  # starlette's TestClient warns about httpx at import
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    bundle = open_model(exports[request.param])
    app = create_app(bundle, ServerSettings(max_bytes=MAX_BYTES, max_pixels=4_000_000))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def assert_clean_error(response, status: int, tmp_root: Path) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and body["error"]
    for leak in ("Traceback", 'File "', str(tmp_root), "/work", "site-packages"):
        assert leak not in response.text


def test_probes_and_model_info(client, exports: dict[str, Path]):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    info = client.get("/v1/model").json()
    assert info["variant"] == "p4" and info["input"]["size"] == 64
    assert info["parameters"] > 0 and info["metrics"]["dice"] == 0.42
    assert info["format"] in ("torchscript", "onnx")
    assert str(exports["onnx"].parent) not in json.dumps(info)


def test_png_mask_has_the_image_size(client):
    image = pattern(50, 70, 1)
    response = client.post(
        "/v1/segment", content=encode(image), headers={"content-type": "image/png"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    mask = decode_png(response.content)
    assert mask.shape == (50, 70) and set(np.unique(mask)) <= {0, 255}
    assert response.headers["x-model-id"].startswith("p4-")
    fraction = float(response.headers["x-foreground-fraction"])
    assert fraction == pytest.approx(np.count_nonzero(mask) / mask.size, abs=1e-5)


def test_multipart_json_summary(client):
    image = pattern(81, 45, 2)
    files = {"file": ("b.jpg", encode(image, ".jpg"), "image/jpeg")}
    body = client.post("/v1/segment?format=json&tta=rot90", files=files).json()
    assert (body["width"], body["height"]) == (45, 81)
    assert body["tta"] == "rot90" and body["latency_ms"] > 0
    assert 0.0 <= body["foreground_fraction"] <= 1.0
    assert len(body["boxes"]) == len(body["contours"])
    for box, polygon in zip(body["boxes"], body["contours"], strict=True):
        assert box["x"] + box["width"] <= 45 and box["y"] + box["height"] <= 81
        assert all(0 <= x < 45 and 0 <= y < 81 for x, y in polygon)


def test_threshold_query(client):
    data = encode(pattern(40, 40))
    everything = decode_png(client.post("/v1/segment?threshold=0", content=data).content)
    assert (everything == 255).all()
    assert client.post("/v1/segment?threshold=2", content=data).status_code == 422


def test_real_image(client):
    path = real_image()
    if path is None:
        pytest.skip("shared Kvasir-SEG images are absent (../shared/data)")
    data = path.read_bytes()
    if len(data) > MAX_BYTES:
        pytest.skip("shared image larger than this test's body limit")
    mask = decode_png(client.post("/v1/segment", content=data).content)
    assert mask.shape == cv2.imread(str(path)).shape[:2]


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("oversized", 413),
        ("oversized-chunked", 413),
        ("truncated", 422),
        ("non-image", 415),
        ("gif", 415),
        ("zero-byte", 400),
        ("huge-dimensions", 413),
        ("multipart-without-file", 422),
        ("bad-format-query", 422),
    ],
)
def test_bad_uploads_get_clean_4xx(client, name: str, status: int, tmp_path: Path):
    valid = encode(pattern(120, 160))
    url, kwargs = "/v1/segment", {}
    if name == "oversized":
        kwargs["content"] = b"\xff" * (MAX_BYTES + 1)
    elif name == "oversized-chunked":  # no Content-Length: the limit applies while streaming
        kwargs["content"] = iter([b"\xff" * 100_000] * 4)
    elif name == "truncated":
        kwargs["content"] = valid[: len(valid) // 2]
    elif name == "non-image":
        kwargs["content"] = b"%PDF-1.4\n" + b"x" * 500
    elif name == "gif":
        kwargs["content"] = gif_bytes()
    elif name == "zero-byte":
        kwargs["content"] = b""
    elif name == "huge-dimensions":
        kwargs["content"] = png_bomb()
    elif name == "multipart-without-file":
        kwargs["files"] = {"image": ("a.png", valid, "image/png")}
    else:
        url, kwargs["content"] = "/v1/segment?format=xml", valid
    assert_clean_error(client.post(url, **kwargs), status, tmp_path)


def test_unexpected_errors_are_generic_500(client, monkeypatch: pytest.MonkeyPatch, tmp_path):
    def boom(*_args, **_kwargs):
        raise RuntimeError(f"secret detail at {tmp_path}/weights.bin")

    monkeypatch.setattr(client.app.state.engine, "probabilities", boom)
    response = client.post("/v1/segment", content=encode(pattern(20, 20)))
    assert_clean_error(response, 500, tmp_path)
    assert response.json() == {"error": "internal server error", "status": 500}
    assert "secret" not in response.text


def test_concurrent_requests_give_identical_masks(client):
    images = [encode(pattern(60 + 8 * i, 90 - 6 * i, i)) for i in range(3)]
    expected = [client.post("/v1/segment", content=data).content for data in images]

    def post(i: int) -> bytes:
        return client.post("/v1/segment", content=images[i % 3]).content

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(post, range(24)))
    assert all(result == expected[i % 3] for i, result in enumerate(results))


def encoded(array: np.ndarray, ext: str) -> bytes:
    ok, buffer = cv2.imencode(ext, array)
    assert ok
    return buffer.tobytes()


def served_mask_matches_predict(client, data: bytes, suffix: str, tmp_path: Path) -> None:
    """The server's mask equals the one computed from the pixels predict's reader gives."""
    from polypseg.data.io import read_image
    from polypseg.deploy.predict import segment, to_mask

    path = tmp_path / f"upload{suffix}"
    path.write_bytes(data)
    bundle = client.app.state.engine.bundle
    expected = to_mask(segment(bundle, [read_image(path)])[0], bundle.threshold)
    response = client.post("/v1/segment", content=data)
    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(decode_png(response.content), expected)


def test_sixteen_bit_png_is_scaled_like_predict(client, tmp_path: Path):
    """A 16-bit gray PNG: the server decodes the pixels predict does (value / 257), where it
    used to clip them (93% of the image became white)."""
    ramp = (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)
    served_mask_matches_predict(client, encoded(ramp, ".png"), ".png", tmp_path)


def test_float_tiff_in_unit_range_is_scaled_like_predict(client, tmp_path: Path):
    image = pattern(40, 56, 3).astype(np.float32) / 255.0
    data = encoded(cv2.cvtColor(image, cv2.COLOR_RGB2BGR)[..., 0], ".tiff")  # one float band
    served_mask_matches_predict(client, data, ".tiff", tmp_path)


@pytest.mark.parametrize(
    ("array", "needle"),
    [
        (np.full((20, 20), 200.0, np.float32), "floating-point pixels in [200, 200]"),
        (np.full((20, 20, 3), 0.5, np.float32), "cannot be read"),  # PIL: no float RGB TIFF
        (np.full((20, 20), -5, np.int16), "unsupported pixel type int16"),
    ],
    ids=["float-out-of-range", "float-rgb", "signed-int"],
)
def test_pixels_of_unknown_range_are_refused_with_415(client, array, needle: str, tmp_path):
    response = client.post("/v1/segment", content=encoded(array, ".tiff"))
    assert_clean_error(response, 415, tmp_path)
    assert needle in response.json()["error"]


def test_work_memory_of_an_upload_comes_from_its_header():
    from polypseg.deploy.imageio import DECODER_BYTES, read_header

    side = 100
    cases = {
        # the array as stored counts twice (the decoder's buffer and its result)
        "rgb8": (encoded(np.zeros((side, side, 3), np.uint8), ".png"), 6),  # 2 * 3
        "gray16": (encoded(np.zeros((side, side), np.uint16), ".png"), 8),  # 2 * 2 + 1 + 3
        "rgba16": (encoded(np.zeros((side, side, 4), np.uint16), ".png"), 23),  # 2 * 8 + 4 + 3
        "float": (encoded(np.zeros((side, side), np.float32), ".tiff"), 12),  # 2 * 4 + 1 + 3
        "jpeg": (encoded(np.zeros((side, side, 3), np.uint8), ".jpg"), 6),
    }
    for name, (data, per_pixel) in cases.items():
        header = read_header(data)
        assert (header.width, header.height) == (side, side), name
        assert header.work_bytes == per_pixel * side * side + DECODER_BYTES, name


def test_memory_budget_serves_in_order_and_times_out():
    import asyncio

    from polypseg.deploy.memory import BudgetTimeout, MemoryBudget

    async def scenario() -> list[str]:
        budget = MemoryBudget(100)
        order: list[str] = []

        async def job(name: str, size: int, hold: float) -> None:
            async with budget.reserve(size):
                order.append(name)
                assert budget.reserved <= budget.capacity
                await asyncio.sleep(hold)

        first = asyncio.create_task(job("a", 70, 0.05))
        await asyncio.sleep(0)
        rest = [asyncio.create_task(job(n, s, 0.01)) for n, s in (("b", 60), ("c", 10))]
        huge = asyncio.create_task(job("huge", 10_000, 0))  # more than all: gets all, alone
        await asyncio.gather(first, *rest, huge)
        assert budget.reserved == 0 and budget.peak <= 100
        async with budget.reserve(100):
            with pytest.raises(BudgetTimeout):
                async with budget.reserve(1, timeout=0.01):
                    pass
        assert budget.reserved == 0
        return order

    # first come, first served: c fits beside a but waits behind b
    assert asyncio.run(scenario()) == ["a", "b", "c", "huge"]


def test_the_pending_limit_refuses_before_reading_the_body(exports: dict[str, Path]):
    from starlette.exceptions import HTTPException

    bundle = open_model(exports["onnx"])
    engine = create_app(bundle, ServerSettings(max_pending=1), warm_up=False).state.engine
    with engine.admitted():
        with pytest.raises(HTTPException) as busy, engine.admitted():
            pass
        assert busy.value.status_code == 503
    with engine.admitted():  # the place is free again
        pass


def with_exif_orientation(image: np.ndarray, orientation: int, fmt: str = "PNG") -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, fmt, exif=exif.tobytes())
    return buffer.getvalue()


def test_model_info_says_format_precision_and_card(client):
    info = client.get("/v1/model").json()
    meta = client.app.state.engine.bundle.meta
    assert info["precision"] == "float32"
    assert info["export_id"] == f"{info['format']}-{meta['sha256'][:12]}"
    assert info["card"]["research_use_only"] is True
    assert "Research use only" in info["card"]["licence"]
    assert info["card"]["metrics"] == info["metrics"] == {"dice": 0.42, "iou": 0.3}
    assert "docs" not in info["limits"]
    assert client.get("/docs").status_code == 404  # Swagger UI needs a CDN: off by default
    assert "/v1/preview" in client.get("/openapi.json").json()["paths"]


def test_docs_are_served_on_request(exports: dict[str, Path]):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    app = create_app(open_model(exports["onnx"]), ServerSettings(docs=True), warm_up=False)
    with TestClient(app) as test_client:
        response = test_client.get("/docs")
        assert response.status_code == 200 and "swagger" in response.text.lower()


def test_exif_orientation_gives_an_upright_mask(client):
    """A sideways PNG tagged with orientation 6 (256 x 200 stored, shown 200 x 256) gets the
    mask of the upright image: the same as the upright image's, sent without a tag."""
    stored = pattern(200, 256, 3)
    tagged = client.post("/v1/segment", content=with_exif_orientation(stored, 6))
    upright = np.ascontiguousarray(np.rot90(stored, -1))  # orientation 6: a clockwise turn
    plain = client.post("/v1/segment", content=encode(upright))
    assert tagged.status_code == plain.status_code == 200
    mask = decode_png(tagged.content)
    assert mask.shape == (256, 200)
    np.testing.assert_array_equal(mask, decode_png(plain.content))
    body = client.post("/v1/segment?format=json", content=with_exif_orientation(stored, 6)).json()
    assert (body["width"], body["height"]) == (200, 256)


def test_preview_is_the_decoded_image_as_png(client, tmp_path: Path, monkeypatch):
    """A TIFF (browsers cannot draw it) comes back as PNG, pixel for pixel; a tagged image
    upright; a large one scaled to the longest side allowed; garbage as a JSON error."""
    from polypseg.deploy import server as server_module

    image = pattern(60, 90, 4)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "TIFF")
    response = client.post("/v1/preview", content=buffer.getvalue())
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    preview = cv2.cvtColor(decode_png(response.content), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(preview, image)
    turned = decode_png(client.post("/v1/preview", content=with_exif_orientation(image, 8)).content)
    assert turned.shape == (90, 60, 3)
    monkeypatch.setattr(server_module, "PREVIEW_MAX_SIDE", 30)
    small = decode_png(client.post("/v1/preview", content=buffer.getvalue()).content)
    assert small.shape == (20, 30, 3)
    assert_clean_error(client.post("/v1/preview", content=b"not an image"), 415, tmp_path)


@pytest.mark.parametrize(("decision", "present"), [
    ({"min_area_fraction": 0.0, "min_peak_probability": 0.0}, True),
    ({"min_area_fraction": 1.5, "min_peak_probability": 0.5}, False),
])
def test_json_says_whether_a_polyp_is_present_by_the_checkpoint_decision(
    run_dir: Path, tmp_path: Path, decision: dict, present: bool
) -> None:
    import shutil
    from dataclasses import replace

    from polypseg.checkpoint import read_meta, write_meta

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    stem = run / "checkpoints" / "best"
    write_meta(stem, replace(read_meta(stem), decision=decision))
    app = create_app(open_model(run), ServerSettings(max_bytes=MAX_BYTES, max_pixels=4_000_000))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        data = encode(pattern(40, 50))
        body = test_client.post("/v1/segment?format=json", content=data,
                                headers={"content-type": "image/png"}).json()
        png = test_client.post("/v1/segment", content=data,
                               headers={"content-type": "image/png"})
    assert body["polyp_present"] is present
    assert png.headers["x-polyp-present"] == ("true" if present else "false")


def test_a_request_with_tta_is_decided_by_the_thresholds_chosen_for_it(
    run_dir: Path, tmp_path: Path
) -> None:
    """Plain thresholds no map can meet, rot90 thresholds every map meets: the answer follows
    the request's ``tta``."""
    import shutil
    from dataclasses import replace

    from polypseg.checkpoint import read_meta, write_meta

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    stem = run / "checkpoints" / "best"
    decision = {"min_area_fraction": 1.5, "min_peak_probability": 0.5, "source": "validation",
                "by_tta": {"rot90": {"min_area_fraction": 0.0, "min_peak_probability": 0.0}}}
    write_meta(stem, replace(read_meta(stem), decision=decision))
    app = create_app(open_model(run), ServerSettings(max_bytes=MAX_BYTES, max_pixels=4_000_000))
    data = encode(pattern(40, 50))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        plain, tta = (test_client.post(f"/v1/segment?format=json{query}", content=data,
                                       headers={"content-type": "image/png"}).json()
                      for query in ("", "&tta=rot90"))
    assert plain["polyp_present"] is False and tta["polyp_present"] is True
    assert tta["tta"] == "rot90"
