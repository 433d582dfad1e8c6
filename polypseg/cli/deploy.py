"""CLI commands: ``export``, ``predict``, ``serve`` (thin wrappers over :mod:`polypseg.deploy`)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from polypseg.errors import PolypsegError
from polypseg.options import ExportFormat, OnnxExporter, Overlay, Quantization, Tta

if TYPE_CHECKING:
    from polypseg.deploy.http import ConnectionLimits
    from polypseg.deploy.server import ServerSettings


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6,
          "mib": 2**20, "g": 10**9, "gb": 10**9, "gib": 2**30}  # fmt: skip


def parse_size(text: str) -> int:
    """``"10MB"`` -> 10000000, ``"10MiB"`` -> 10485760, ``"4096"`` -> 4096."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise PolypsegError(f"not a size: {text!r} (e.g. 10MB, 10MiB or 10485760)")
    return int(float(match.group(1)) * _UNITS[unit])


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        if threads < 1:
            raise PolypsegError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)


def export(
    run: Path = typer.Argument(..., help="Run folder (or checkpoint stem) to export."),
    format: ExportFormat = typer.Option(..., "--format", "-f", help="Artifact format."),
    out: Path = typer.Option(..., "--out", "-o", help="Export folder to create."),
    which: str = typer.Option("best", help="Checkpoint of the run folder to export."),
    tolerance: float = typer.Option(
        1e-4, min=0.0, help="Parity: max abs difference of logits allowed."
    ),
    opset: int = typer.Option(18, help="ONNX opset version."),
    onnx_exporter: OnnxExporter = typer.Option(
        OnnxExporter.AUTO, help="ONNX exporter: dynamo (torch.export), legacy, or auto (fallback)."
    ),
    overwrite: bool = typer.Option(False, help="Replace OUT if it already exists."),
    quantize: Quantization | None = typer.Option(
        None, help="int8: static ONNX quantisation calibrated on the run's training images, "
        "refused unless its validation Dice stays within --max-dice-drop of the float model's."),
    max_dice_drop: float = typer.Option(
        0.005, help="--quantize: largest drop of mean validation Dice (0.005 = 0.5 points)."),
    calibration_images: int = typer.Option(
        64, help="--quantize: training images that calibrate the int8 ranges."),
    data: Path | None = typer.Option(
        None, help="--quantize: the run's dataset folder (default: the one it recorded)."),
) -> None:
    """Freeze a trained model (plain convs, no zoo/e2cnn needed) and check parity.\f

    Args:
        run: a run folder or checkpoint stem.
        format: the artifact format (TorchScript, ONNX or plain state dict).
        out: the export folder to create.
        which: the run folder's checkpoint, ``best`` or ``last``.
        tolerance: largest max-abs difference of logits between the reloaded artifact and the model.
        opset: the ONNX opset version.
        onnx_exporter: ``dynamo`` (torch.export), ``legacy``, or ``auto`` (dynamo, then legacy).
        overwrite: replace ``out`` if it exists.
        quantize: ``int8``: static ONNX quantisation, gated on validation Dice; ``None``: float.
        max_dice_drop: with ``quantize``: the largest drop of mean validation Dice (0.005 = 0.5
            points).
        calibration_images: with ``quantize``: training images that calibrate the int8 ranges.
        data: with ``quantize``: the run's dataset folder; ``None``: the one its config records.
    """
    from polypseg.deploy.export import export_run

    result = export_run(
        run,
        format,
        out,
        which=which,
        tolerance=tolerance,
        opset=opset,
        onnx_exporter=onnx_exporter,
        overwrite=overwrite,
        quantize=quantize,
        max_dice_drop=max_dice_drop,
        calibration_images=calibration_images,
        data=data,
    )
    parity = result.meta["parity"]
    quantization = result.meta.get("quantization")
    if quantization:
        quality = quantization["quality"]
        typer.echo(
            f"exported {result.meta['variant']} as int8 onnx to {result.out} (validation Dice "
            f"{quality['int8_dice']:.4f}, float {quality['float_dice']:.4f}, "
            f"{quality['images']} images)"
        )
        return
    typer.echo(
        f"exported {result.meta['variant']} as {format.value} to {result.out} "
        f"(parity max abs diff {parity['max_abs_diff']:.2e} <= {parity['tolerance']:g})"
    )


def predict(
    model: Path = typer.Argument(..., help="Run folder, checkpoint or export folder."),
    inputs: list[Path] = typer.Argument(..., help="Images, folders of images/videos, videos."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for masks, overlays and CSV."),
    tta: Tta = typer.Option(Tta.NONE, help="Test-time augmentation (rot90: mean of 4)."),
    batch_size: int = typer.Option(8, min=1, help="Images per forward pass."),
    threshold: float | None = typer.Option(
        None, min=0.0, max=1.0, help="Probability threshold (default: the model's)."
    ),
    overlay: Overlay = typer.Option(Overlay.OUTLINE, help="Overlay style, or none."),
    overlay_video: bool = typer.Option(
        True, help="Write a video's overlays as a video (videos/VIDEO.mp4), not as JPGs."
    ),
    threads: int | None = typer.Option(None, help="CPU threads (default: torch's)."),
) -> None:
    """Segment images and video frames; masks at each input's original size.\f

    Args:
        model: a run folder, checkpoint stem or export folder.
        inputs: image files, video files, and folders of them.
        out: the folder of masks, overlays, ``predictions.csv``, per-video tables and COCO files.
        tta: ``none`` or ``rot90`` (the mean of the four quarter turns).
        batch_size: images per forward pass.
        threshold: probability threshold in [0, 1]; ``None``: the model's recorded one.
        overlay: ``outline``, ``tint``, or ``none`` for no overlays.
        overlay_video: write a video's overlays as ``videos/VIDEO.mp4`` instead of one JPG per
            frame.
        threads: CPU threads of torch/onnxruntime; ``None``: torch's default.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from polypseg.atomic import check_output_folder
    from polypseg.deploy.batch import predict_files
    from polypseg.deploy.bundle import open_model
    from polypseg.deploy.sources import collect_sources, estimate_frames

    _set_threads(threads)
    check_output_folder(out)  # before any work: a file in the way, a read-only disk
    sources = collect_sources(inputs)
    bundle = open_model(model, threads=threads)
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    console = Console(stderr=True)  # stdout keeps only the summary line
    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as progress:
        task = progress.add_task("segmenting", total=estimate_frames(sources) or None)
        summary = predict_files(
            bundle,
            sources,
            out,
            tta=tta,
            batch_size=batch_size,
            threshold=threshold,
            overlay_style=overlay,
            overlay_video=overlay_video,
            on_progress=lambda n: progress.advance(task, n),
        )
    typer.echo(
        f"{summary.images} masks in {summary.out} (CSV {summary.csv}, "
        f"mean foreground {summary.mean_foreground:.3f}, polyp present in {summary.with_polyp})"
    )
    for path in summary.videos:
        typer.echo(f"video summary {path}")
    if summary.problems:  # after writing everything that could be read: exit status 2
        raise PolypsegError("; ".join(summary.problems) + "; the frames read have their masks")


def serve(
    model: Path = typer.Argument(..., help="Run folder, checkpoint or export folder."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (0.0.0.0 in a container)."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
    threads: int | None = typer.Option(None, help="Torch/onnxruntime intra-op CPU threads."),
    max_bytes: str = typer.Option("10MiB", help="Largest request body (e.g. 10MiB, 500kB)."),
    max_pixels: int = typer.Option(40_000_000, min=1, help="Largest image (width x height)."),
    max_pending: int = typer.Option(
        32, min=1, help="Segment requests in progress (body, queue, inference) before 503."
    ),
    max_memory: str = typer.Option(
        "512MiB", help="Decoded-image work memory shared by concurrent requests; larger waits."
    ),
    header_timeout: float = typer.Option(
        10.0, min=0.1, help="Seconds for a request line and headers to arrive, else 408."
    ),
    body_timeout: float = typer.Option(
        60.0, min=0.1, help="Seconds for a request body to arrive after its headers, else 408."
    ),
    keep_alive: float = typer.Option(5.0, min=1.0, help="Seconds an idle connection stays open."),
    max_connections: int = typer.Option(
        256, min=4, help="Open connections (lowered to fit the open-file limit)."
    ),
    max_uploads: int = typer.Option(
        64, min=1, help="Request bodies arriving at once, before 503 (+ Retry-After)."
    ),
    max_uploads_per_client: int = typer.Option(
        8, min=1, help="Request bodies arriving at once from one client address."
    ),
    min_body_rate: str = typer.Option(
        "16KiB", help="Bytes per second a body must average after 5 s, else 408 (0: any)."
    ),
    allowed_host: list[str] = typer.Option(
        [], help="Host name to accept besides the bound one and localhost (repeat; '*': any)."
    ),
    tta: Tta = typer.Option(Tta.NONE, help="Default test-time augmentation."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
    access_log: bool = typer.Option(True, help="Log one line per request."),
    docs: bool = typer.Option(
        False, help="Serve Swagger UI at /docs (the browser loads its assets from a CDN)."
    ),
) -> None:
    """Serve the model over HTTP (POST /v1/segment, GET /healthz /readyz /v1/model).\f

    Args:
        model: a run folder, checkpoint stem or export folder.
        host: the address to bind.
        port: the TCP port.
        threads: intra-op CPU threads of torch/onnxruntime; ``None``: their default.
        max_bytes: the largest request body, as a size string (``10MiB``); above it 413.
        max_pixels: the largest image, width x height; above it 413.
        max_pending: segment requests in progress (body, queue, inference) before 503.
        max_memory: decoded-image work memory shared by all requests, as a size string.
        header_timeout: seconds for the request line and headers, else 408.
        body_timeout: seconds for the body after the headers, else 408.
        keep_alive: seconds an idle connection stays open.
        max_connections: open connections at most (lowered to fit the open-file limit).
        max_uploads: request bodies arriving at once, in all, before 503.
        max_uploads_per_client: request bodies arriving at once from one client address.
        min_body_rate: bytes per second a body must average after 5 s, as a size string; ``0``: any.
        allowed_host: host names accepted besides the bound one and localhost; ``*``: any.
        tta: the test-time augmentation of a request that names none.
        log_level: uvicorn's log level.
        access_log: log one line per request.
        docs: serve Swagger UI at ``/docs``.
    """
    from polypseg.deploy.bundle import open_model
    from polypseg.deploy.http import bind_socket, serve_app
    from polypseg.deploy.server import create_app

    _set_threads(threads)
    settings = _serve_settings(
        max_bytes, max_pixels, max_pending, max_memory, max_uploads, max_uploads_per_client
    )
    settings = _serve_defaults(settings, tta, docs, host, allowed_host)
    rate = parse_size(min_body_rate)
    try:  # before loading the model: a busy port or a bad --host is said at once
        sock = bind_socket(host, port)
    except ValueError as err:
        raise PolypsegError(str(err)) from None
    bundle = open_model(model, threads=threads)
    limits = _connection_limits(
        max_connections, max_pending, rate, (header_timeout, body_timeout, keep_alive)
    )
    typer.echo(
        f"serving {bundle.model_id} ({bundle.kind}) on http://{host}:{port} "
        f"(at most {limits.max_connections} connections)",
        err=True,
    )
    app = create_app(bundle, settings)
    serve_app(
        app, host=host, port=port, limits=limits, log_level=log_level, access_log=access_log,
        sock=sock,
    )  # fmt: skip


def _serve_settings(
    max_bytes: str,
    max_pixels: int,
    max_pending: int,
    max_memory: str,
    max_uploads: int,
    max_uploads_per_client: int,
) -> ServerSettings:
    """``serve``'s limits, checked: sizes parsed and positive (one-line errors).

    Args:
        max_bytes: ``--max-bytes`` as given (``10MiB``).
        max_pixels: ``--max-pixels``.
        max_pending: ``--max-pending``.
        max_memory: ``--max-memory`` as given (``512MiB``).
        max_uploads: ``--max-uploads``.
        max_uploads_per_client: ``--max-uploads-per-client``.
    """
    from polypseg.deploy.server import ServerSettings

    sizes = {"--max-bytes": max_bytes, "--max-memory": max_memory}
    parsed = {}
    for option, text in sizes.items():
        parsed[option] = parse_size(text)
        if parsed[option] < 1:
            raise PolypsegError(f"{option} must be positive, got {text!r}")
    return ServerSettings(
        max_bytes=parsed["--max-bytes"],
        max_pixels=max_pixels,
        max_pending=max_pending,
        max_memory=parsed["--max-memory"],
        max_uploads=max_uploads,
        max_uploads_per_client=max_uploads_per_client,
    )


def _serve_defaults(
    settings: ServerSettings, tta: Tta, docs: bool, host: str, allowed_host: list[str]
) -> ServerSettings:
    """``settings`` with ``serve``'s defaults of a request (``--tta``), ``--docs`` and the
    ``Host`` names to accept (the bound one, localhost and ``--allowed-host``).

    Args:
        settings: the checked limits (:func:`_serve_settings`).
        tta: ``--tta``.
        docs: ``--docs``.
        host: ``--host``.
        allowed_host: the ``--allowed-host`` values.
    """
    from polypseg.deploy.headers import allowed_host_names
    from polypseg.options import look_up_tta

    return replace(
        settings,
        tta=look_up_tta(tta),
        docs=docs,
        allowed_hosts=allowed_host_names(host, allowed_host),
    )


def _connection_limits(
    max_connections: int, max_pending: int, min_body_rate: int,
    timeouts: tuple[float, float, float],
) -> ConnectionLimits:  # fmt: skip
    """``serve``'s per-connection limits, the connection cap lowered to fit the open-file limit
    (called with the model loaded, so that its files count among those in use).

    Args:
        max_connections: ``--max-connections``.
        max_pending: ``--max-pending`` (each pending request may hold a file).
        min_body_rate: ``--min-body-rate`` in bytes per second.
        timeouts: ``--header-timeout``, ``--body-timeout`` and ``--keep-alive`` in seconds.
    """
    from polypseg.deploy.http import FD_RESERVE, ConnectionLimits, connection_cap

    backlog = ConnectionLimits.backlog
    try:
        connections = connection_cap(max_connections, FD_RESERVE + max_pending + 2 * backlog)
    except ValueError as err:
        raise PolypsegError(str(err)) from None
    header_timeout, body_timeout, keep_alive = timeouts
    return ConnectionLimits(
        header_timeout, body_timeout, keep_alive, connections, min_body_rate=min_body_rate,
        backlog=backlog,
    )  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command(help="Export a run's model to TorchScript, ONNX or safetensors (parity-checked).")(
        export
    )
    app.command(help="Segment images, folders and videos; write masks, overlays and a CSV.")(
        predict
    )
    app.command(help="Serve a model over HTTP with FastAPI + uvicorn.")(serve)
