"""The HTTP API behind ``polypseg serve``: a FastAPI app factory over an :class:`OpenedModel`.

Routes:

* ``POST /v1/segment`` — the image as multipart field ``file`` or as the raw request body;
  answers the ``{0, 255}`` mask as PNG at the image's size (default) or, with
  ``?format=json``, the foreground fraction, ``polyp_present`` (the frame-level decision of
  :mod:`polypseg.decision` with the model's thresholds; header ``X-Polyp-Present`` with a PNG),
  bounding boxes, simplified polygon contours,
  model id and latency. ``?threshold=`` and ``?tta=rot90`` override the defaults.
* ``POST /v1/preview`` — the same upload answered with the decoded image as PNG (upright for
  its EXIF orientation, at most :data:`PREVIEW_MAX_SIDE` pixels on its long side), for
  browsers that cannot draw the format itself (TIFF); the same limits and admission apply.
* ``GET /healthz`` (process alive), ``GET /readyz`` (model loaded and warmed up: 200, else 503),
  ``GET /v1/model`` (variant, format, precision, parameters, metrics, model card, input side;
  no paths).
* ``GET /docs`` (Swagger UI) only with ``ServerSettings.docs``: its script and style come from
  a CDN, so it is off by default (the page and the API work offline).

Limits: the request body is counted while it streams in (``Content-Length`` is checked first)
and refused with 413 past ``max_bytes``; image headers are checked before decoding (413 past
``max_pixels``, 415 for formats other than PNG/JPEG/BMP/TIFF and for pixels of unknown range,
422 when truncated). Every error is ``{"error": message, "status": code}``; unexpected
exceptions give a generic 500 whose body carries no detail (the traceback goes to the server
log only).

Admission and memory, in this order for each ``POST /v1/segment``: a place among the bodies
arriving (``max_uploads``, ``max_uploads_per_client`` from one client address; else 503 at
once, before the body is read), the body, its bytes counted as they arrive against
``body_memory`` (503 past it) and kept in an anonymous memory map until the request ends; once
the body is complete, a place among the ``max_pending`` requests in progress (503 otherwise; a
stalled upload never holds one), the image header, then a reservation of the image's work memory
(:attr:`~polypseg.deploy.imageio.ImageHeader.work_bytes`) from a budget of ``max_memory``
bytes shared by all requests (:class:`~polypseg.deploy.memory.MemoryBudget`; requests wait
their turn, 503 after ``queue_timeout`` s). Only then are the pixels decoded; decoding,
inference, thresholding and encoding run in the threadpool within the reservation, the decoded
image is released before the full-size probability map is made, and after a large request the C
heap is trimmed. So the memory of concurrent work stays within ``max_memory`` whatever the
uploads. Torch models run one batch at a time under a lock (onnxruntime sessions are
thread-safe and run concurrently). Every 503 carries ``Retry-After``. Deadlines, the minimum
body rate and the connection cap are the HTTP layer's (:mod:`polypseg.deploy.http`); security
headers and the ``Host`` check are :mod:`polypseg.deploy.headers`'.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from polypseg.deploy.card import make_card, precision_of
from polypseg.deploy.headers import BrowserGuard
from polypseg.deploy.imageio import (
    DEFAULT_MAX_PIXELS,
    ImageHeader,
    UploadError,
    decode_pixels,
    encode_png,
    read_header,
)
from polypseg.deploy.memory import (
    BudgetTimeout,
    ByteQuota,
    MemoryBudget,
    body_buffer,
    exact_copy,
    transient_bytes,
    trim_heap,
)
from polypseg.deploy.page import register as register_page
from polypseg.deploy.predict import (
    decision_of,
    foreground_fraction,
    mask_geometry,
    polyp_present,
    postprocess,
    predict_probabilities,
    preprocess,
    segment,
    to_mask,
)
from polypseg.opened import OpenedModel
from polypseg.options import Tta, look_up_tta

log = logging.getLogger("polypseg.serve")

#: Longest side of a ``/v1/preview`` image.
PREVIEW_MAX_SIDE = 2048
#: Default request body limit: 10 MiB.
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
#: Default budget of decoded-image work memory across concurrent requests: 512 MiB.
DEFAULT_MAX_MEMORY = 512 * 1024 * 1024
#: Requests whose work memory exceeds this give their freed memory back to the OS afterwards.
TRIM_AFTER_BYTES = 32 * 1024 * 1024
#: Working memory of one forward pass assumed where it cannot be measured, and the least
#: assumed where it can.
DEFAULT_INFERENCE_BYTES = 64 * 1024 * 1024
MIN_INFERENCE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ServerSettings:
    """Limits and defaults of the HTTP API."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_pending: int = 32
    #: Test-time augmentation of a request that names none (``None``: none).
    tta: Tta | None = None
    #: Bytes of decoded-image work that concurrent requests may hold together.
    max_memory: int = DEFAULT_MAX_MEMORY
    #: Seconds a request may wait for its share of ``max_memory`` before a 503.
    queue_timeout: float = 120.0
    #: Serve Swagger UI at ``/docs`` (loads its assets from a CDN: off by default).
    docs: bool = False
    #: Bodies arriving at once, in all and from one client address.
    max_uploads: int = 64
    max_uploads_per_client: int = 8
    #: Bytes of request bodies held at once (arriving or complete); ``None``:
    #: ``max_pending * max_bytes``.
    max_body_memory: int | None = None
    #: Seconds a 503 tells the client to wait before retrying (``Retry-After``).
    retry_after: int = 2
    #: ``Host`` names accepted (addresses always are); ``None``: any.
    allowed_hosts: frozenset[str] | None = None

    @property
    def body_memory(self) -> int:
        """Bytes of request bodies held at once."""
        if self.max_body_memory is not None:
            return self.max_body_memory
        return self.max_pending * self.max_bytes

    def limits(self) -> dict[str, Any]:
        """The limits and defaults ``GET /v1/model`` reports (the body memory worked out; not
        the accepted host names)."""
        limits = {k: v for k, v in asdict(self).items() if k not in ("docs", "allowed_hosts")}
        limits["max_body_memory"] = self.body_memory
        return limits


@dataclass
class Segmentation:
    """What :meth:`_Engine.segment_upload` made of one upload (the mask itself is released)."""

    width: int
    height: int
    fraction: float
    polyp_present: bool = False  # the frame-level decision (polypseg.decision)
    png: bytes | None = None
    geometry: dict[str, Any] | None = None


class _Engine:
    """Admission, decoding and inference for one request, serialised where the backend needs it."""

    def __init__(self, bundle: OpenedModel, settings: ServerSettings) -> None:
        self.bundle = bundle
        self.settings = settings
        self.lock: contextlib.AbstractContextManager[Any] = (
            contextlib.nullcontext() if bundle.thread_safe else threading.Lock()
        )
        self.pending = 0  # requests in progress (event loop only)
        self.uploads: dict[str, int] = {}  # bodies arriving, per client address
        self.bodies = ByteQuota(settings.body_memory)
        self.budget = MemoryBudget(settings.max_memory)
        #: Working memory of one forward pass: measured at warm-up, this until then.
        self.inference_bytes = DEFAULT_INFERENCE_BYTES
        self.ready = threading.Event()

    def warm_up(self) -> None:
        """One inference on a blank image, measuring the memory it needs (the least any
        reservation is); sets ``ready`` when it succeeds."""
        try:
            side = self.bundle.size
            with self.lock:
                measured = transient_bytes(
                    lambda: segment(self.bundle, [np.zeros((side, side, 3), np.uint8)])
                )
        except Exception:  # logged; /readyz stays 503
            log.exception("model warm-up failed")
            return
        if measured is not None:
            self.inference_bytes = max(measured, MIN_INFERENCE_BYTES)
        log.info(
            "memory budget %d MiB; one inference needs about %d MiB",
            self.budget.capacity >> 20,
            self.inference_bytes >> 20,
        )
        self.ready.set()

    def reservation(self, header: ImageHeader) -> int:
        """Bytes a request on an image with ``header`` reserves from the budget: the larger of
        its image work and one forward pass, which never overlap (the decoded image is freed
        before inference, the full-size maps made after it)."""
        return max(header.work_bytes, self.inference_bytes)

    @contextlib.contextmanager
    def admitted(self) -> Any:
        """A place among the ``max_pending`` requests in progress, or 503 at once."""
        if self.pending >= self.settings.max_pending:
            raise HTTPException(503, "server busy: too many requests in progress, retry later")
        self.pending += 1
        try:
            yield
        finally:
            self.pending -= 1

    @contextlib.contextmanager
    def uploading(self, client: str) -> Any:
        """A place among the bodies arriving (in all, and from ``client``), or 503 at once."""
        settings = self.settings
        if sum(self.uploads.values()) >= settings.max_uploads:
            raise HTTPException(503, "server busy: too many uploads in progress, retry later")
        if self.uploads.get(client, 0) >= settings.max_uploads_per_client:
            raise HTTPException(
                503, "server busy: too many uploads in progress from this address, retry later"
            )
        self.uploads[client] = self.uploads.get(client, 0) + 1
        try:
            yield
        finally:
            self.uploads[client] -= 1
            if not self.uploads[client]:
                del self.uploads[client]

    @contextlib.asynccontextmanager
    async def body(self, request: Request) -> AsyncIterator[bytes | mmap.mmap]:
        """The request's body (see :func:`_read_body`), its bytes counted against
        ``body_memory`` from arrival until the block ends, when its map is closed."""
        client = request.client.host if request.client else ""
        counted = [0]
        buffer: mmap.mmap | None = None
        try:
            with self.uploading(client):
                buffer, length = await _read_body(
                    request, self.settings.max_bytes, self.bodies, counted
                )
            data: bytes | mmap.mmap = b""
            if length:
                buffer = data = exact_copy(buffer, length)
            yield data
        finally:
            self.bodies.give(counted[0])
            if buffer is not None:
                with contextlib.suppress(BufferError):  # a view still alive: the GC unmaps it
                    buffer.close()

    def probabilities(self, images: list[np.ndarray], tta: Tta | None) -> np.ndarray:
        """The probability map (``float32``, at its own size) of the one RGB image in
        ``images``; the list is emptied once the model input is made, so that the decoded
        pixels are freed before the full-size map exists (the list is their only reference)."""
        batch, placements = preprocess(images, self.bundle)
        images.clear()
        with self.lock:
            probs = predict_probabilities(self.bundle.model, batch, tta)
        return postprocess(probs, placements)[0]

    def segment_upload(
        self, data: bytes, header: ImageHeader, tta: Tta | None, threshold: float, fmt: str
    ) -> Segmentation:
        """Decode, infer, threshold and encode one upload (inside its memory reservation)."""
        try:
            prob = self.probabilities([decode_pixels(data, header)], tta)
            mask = to_mask(prob, threshold)
            present = polyp_present(prob, decision_of(self.bundle.meta, tta), threshold)
            del prob
            height, width = mask.shape  # upright: EXIF orientation applied
            result = Segmentation(width, height, foreground_fraction(mask), present)
            if fmt == "png":
                result.png = encode_png(mask)
            else:
                result.geometry = mask_geometry(mask)
            del mask
            return result
        finally:
            if header.work_bytes > TRIM_AFTER_BYTES:
                trim_heap()

    def preview_upload(self, data: bytes, header: ImageHeader) -> bytes:
        """PNG of the decoded upload, at most :data:`PREVIEW_MAX_SIDE` on its long side."""
        import cv2

        try:
            image = decode_pixels(data, header)
            height, width = image.shape[:2]
            scale = PREVIEW_MAX_SIDE / max(height, width)
            if scale < 1:
                size = (max(1, round(width * scale)), max(1, round(height * scale)))
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            return encode_png(image)
        finally:
            if header.work_bytes > TRIM_AFTER_BYTES:
                trim_heap()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


async def _read_body(
    request: Request, limit: int, quota: ByteQuota, counted: list[int]
) -> tuple[mmap.mmap, int]:
    """The request body in a memory map, and its length; 413 as soon as it exceeds ``limit``
    bytes, 503 when ``quota`` (bodies held by all requests) is spent. Each chunk is counted
    against ``quota`` as it arrives and added to ``counted[0]`` (the caller gives it back)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(400, "invalid Content-Length header")
        if int(declared) > limit:
            raise HTTPException(413, f"request body too large: at most {limit} bytes")
    buffer = body_buffer(int(declared) if declared is not None else limit)
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit or total > len(buffer):
                raise HTTPException(413, f"request body too large: at most {limit} bytes")
            if not quota.take(len(chunk)):
                raise HTTPException(503, "server busy: too many request bodies held, retry later")
            counted[0] += len(chunk)
            buffer.write(chunk)
    except ClientDisconnect:
        buffer.close()
        raise HTTPException(400, "client disconnected before the body was complete") from None
    except BaseException:
        buffer.close()
        raise
    return buffer, total


@contextlib.asynccontextmanager
async def _upload(engine: _Engine, request: Request) -> AsyncIterator[bytes | mmap.mmap]:
    """The uploaded image (inside ``engine.body``): multipart field ``file``, or the whole
    body otherwise. The multipart copy of the file is counted against the body quota too."""
    async with engine.body(request) as body:
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            yield body
            return
        size = len(body)
        if not engine.bodies.take(size):
            raise HTTPException(503, "server busy: too many request bodies held, retry later")
        try:
            raw = bytes(body)

            async def replay() -> dict[str, Any]:
                return {"type": "http.request", "body": raw, "more_body": False}

            form = await Request(request.scope, receive=replay).form(max_files=1, max_fields=8)
            try:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise HTTPException(422, "multipart upload needs a file field named 'file'")
                data = await upload.read()
            finally:
                await form.close()
            raw = b""  # the form parser is done with it
            yield data
        finally:
            engine.bodies.give(size)


def create_app(
    bundle: OpenedModel, settings: ServerSettings | None = None, *, warm_up: bool = True
) -> FastAPI:
    """The FastAPI app serving ``bundle`` (see the module docstring for routes and limits):
    its error handlers, then each group of routes registered on it (as :mod:`polypseg.deploy.page`
    registers ``GET /``), then the browser guard around everything."""
    settings = settings or ServerSettings()
    engine = _Engine(bundle, settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if warm_up:
            await run_in_threadpool(engine.warm_up)
        else:
            engine.ready.set()
        yield

    app = FastAPI(
        title="polypseg",
        summary="Rotation-equivariant polyp segmentation",
        version="1",
        lifespan=lifespan,
        docs_url="/docs" if settings.docs else None,
        redoc_url=None,
    )
    app.state.engine = engine
    register_errors(app, settings)
    register_status(app, engine)
    register_uploads(app, engine)
    register_page(app)
    _guard(app, settings)
    return app


def register_errors(app: FastAPI, settings: ServerSettings) -> None:
    """Answer every error as ``{"error": message, "status": code}`` (503 with
    ``Retry-After``); an unexpected exception as a bare 500, its traceback in the log only."""

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        response = _error(exc.status_code, str(exc.detail))
        if exc.status_code == 503:
            response.headers["Retry-After"] = str(settings.retry_after)
        return response

    @app.exception_handler(UploadError)
    async def upload_error(_: Request, exc: UploadError) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [
            f"{'.'.join(str(p) for p in err.get('loc', ()) if p != 'query')}: {err.get('msg')}"
            for err in exc.errors()
        ]
        return _error(422, "invalid request: " + "; ".join(parts))

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return _error(500, "internal server error")


def register_status(app: FastAPI, engine: _Engine) -> None:
    """Add ``GET /healthz``, ``GET /readyz`` and ``GET /v1/model`` (no paths in any answer)."""
    bundle, settings = engine.bundle, engine.settings

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: the model is loaded and has run once."""
        if engine.ready.is_set():
            return JSONResponse({"status": "ready", "model_id": bundle.model_id})
        response = _error(503, "model not ready")
        response.headers["Retry-After"] = str(settings.retry_after)
        return response

    @app.get("/v1/model")
    def model_info() -> dict[str, Any]:
        """The served model: variant, format, precision, parameters, metrics, model card,
        input side, limits."""
        info = bundle.info()
        meta = bundle.meta
        card = meta.get("card") or make_card(
            meta, None, info["metrics"], "the checkpoint's, at the epoch it was saved")[0]
        return {**info, "precision": precision_of(meta), "export_id": meta.get("export_id"),
                "card": card, "limits": settings.limits()}


async def _with_upload(
    engine: _Engine, request: Request, job: Callable[[bytes, ImageHeader], Any]
) -> Any:
    """Upload place and body, then (the body complete) a pending place, the header and the
    memory reservation, then ``job(data, header)`` in the threadpool (the order of the module
    docstring)."""
    settings = engine.settings
    if not engine.ready.is_set():
        raise HTTPException(503, "model not ready")
    async with _upload(engine, request) as data:
        with engine.admitted():  # only now, with the body complete
            header = await run_in_threadpool(read_header, data, settings.max_pixels)
            try:
                async with engine.budget.reserve(
                    engine.reservation(header), settings.queue_timeout
                ):
                    return await run_in_threadpool(job, data, header)
            except BudgetTimeout:
                raise HTTPException(
                    503, "server busy: no memory free for this image in time, retry later"
                ) from None


def register_uploads(app: FastAPI, engine: _Engine) -> None:
    """Add ``POST /v1/preview`` and ``POST /v1/segment`` (each upload admitted, read and
    reserved for by :func:`_with_upload`)."""
    bundle, settings = engine.bundle, engine.settings

    @app.post("/v1/preview", responses={200: {"content": {"image/png": {}}}})
    async def preview_image(request: Request) -> Response:
        """The uploaded image as PNG (upright, long side at most 2048 px), for display."""
        png = await _with_upload(engine, request, engine.preview_upload)
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.post(
        "/v1/segment",
        responses={200: {"content": {"image/png": {}, "application/json": {}}}},
    )
    async def segment_image(
        request: Request,
        format: Literal["png", "json"] = Query("png", description="png mask or json summary"),
        threshold: float | None = Query(None, ge=0.0, le=1.0, description="default: model's"),
        tta: Tta | None = Query(None, description="test-time rot90 mean"),
    ) -> Response:
        """Segment one image (multipart ``file`` or raw body)."""
        start = time.perf_counter()
        use_tta = settings.tta if tta is None else look_up_tta(tta)
        cut = bundle.threshold if threshold is None else threshold
        result = await _with_upload(
            engine, request,
            lambda data, header: engine.segment_upload(data, header, use_tta, cut, format),
        )  # fmt: skip
        latency = (time.perf_counter() - start) * 1000.0
        return _segment_answer(result, bundle.model_id, cut, use_tta, latency)


def _segment_answer(
    result: Segmentation, model_id: str, threshold: float, tta: Tta | None, latency: float
) -> Response:
    """``POST /v1/segment``'s answer: the mask PNG with its summary in headers, or the JSON
    summary.

    Args:
        result: the segmentation of the upload.
        model_id: the served model's id.
        threshold: the probability threshold used.
        tta: the test-time augmentation used (``None``: none).
        latency: milliseconds since the request's handler started.
    """
    if result.png is not None:
        headers = {
            "X-Model-Id": model_id,
            "X-Foreground-Fraction": f"{result.fraction:.6f}",
            "X-Polyp-Present": "true" if result.polyp_present else "false",
            "X-Latency-Ms": f"{latency:.1f}",
        }
        return Response(result.png, media_type="image/png", headers=headers)
    return JSONResponse(
        {
            "model_id": model_id,
            "width": result.width,
            "height": result.height,
            "threshold": threshold,
            "tta": tta,
            "foreground_fraction": result.fraction,
            "polyp_present": result.polyp_present,
            **(result.geometry or {}),
            "latency_ms": round(latency, 2),
        }
    )


def _guard(app: FastAPI, settings: ServerSettings) -> None:
    """Put :class:`~polypseg.deploy.headers.BrowserGuard` outside every other layer of
    ``app``, Starlette's error middleware included, so that even a 500 gets its headers."""
    build = app.build_middleware_stack

    # Swagger UI (--docs) loads its script and style from a CDN: its page keeps the other
    # headers but not the API's policy, which would block them.
    own_policy = frozenset({"/docs", "/docs/oauth2-redirect"} if settings.docs else ())

    def build_guarded() -> Any:
        return BrowserGuard(build(), settings.allowed_hosts, no_csp=own_policy)

    app.build_middleware_stack = build_guarded  # type: ignore[method-assign]
