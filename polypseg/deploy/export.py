"""``polypseg export``: a run's model frozen into TorchScript, ONNX or safetensors, parity-checked.

The zoo model's ``export()`` gives an equivalent plain torch module (expanded filters frozen in
``nn.Conv2d``), so an export needs neither ``zoo`` nor ``e2cnn`` at inference (except "state",
which rebuilds the plain module through ``zoo``). The artifact is written into a temporary
folder beside ``out``, loaded back, and its logits are compared with the *original* zoo model's
on a seeded ``(2, 3, S, S)`` input; only if the maximum absolute difference is within the
tolerance are ``export.json`` and the model card (``README.md``, :mod:`polypseg.deploy.card`)
written and the folder moved into place (one rename). A failed
export leaves nothing behind; the temporary folders of an export that was killed are removed by
the next export to the same ``out``. The folder and its files get the modes ``mkdir`` and
``open`` give under the umask (readable by other users, e.g. a container's, with umask 022).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polypseg.atomic import (
    apply_umask,
    atomic_write_json,
    atomic_write_text,
    check_output_folder,
    make_temp_dir,
    remove_stale_temps,
    stale_temps,
    temp_prefix,
    write_error,
)
from polypseg.checkpoint import ModelSpec
from polypseg.deploy import card as cards
from polypseg.deploy.bundle import (
    ARTIFACTS,
    EXPORT_FORMAT,
    EXPORT_META,
    ONNX_INPUT,
    ONNX_OUTPUT,
    OnnxModule,
    load_state_export,
    tested_metrics,
)
from polypseg.errors import PolypsegError
from polypseg.hashing import file_sha256
from polypseg.inference import forward_logits
from polypseg.opened import frozen, open_run
from zoo import count_parameters

#: Export formats of ``polypseg export``.
FORMATS = tuple(ARTIFACTS)
#: ONNX exporters: torch.export-based ("dynamo"), TorchScript-based ("legacy"), or dynamo with a
#: fallback to legacy ("auto").
ONNX_EXPORTERS = ("auto", "dynamo", "legacy")
#: Default parity tolerance: maximum absolute difference of logits.
DEFAULT_TOLERANCE = 1e-4
#: Default ONNX opset.
DEFAULT_OPSET = 18
#: Lowest opset the models export to: their bilinear upsampling is ``Resize``, opset 11 on.
MIN_OPSET = 11
#: The dynamo exporter writes this opset whatever it is asked for (its conversion to older
#: opsets fails with a traceback and keeps 18), so ``auto`` exports older opsets with legacy.
DYNAMO_OPSET = 18
#: Seed of the parity check's input.
PARITY_SEED = 0


class ExportError(PolypsegError):
    """An export that failed (parity, exporter, output folder); nothing was written."""


@dataclass
class ExportResult:
    """What :func:`export_run` wrote."""

    out: Path
    artifact: Path
    meta: dict[str, Any]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' progress prints, warnings and log lines."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _write_torchscript(plain: nn.Module, example: torch.Tensor, path: Path) -> dict[str, Any]:
    with _quiet():
        try:
            scripted = torch.jit.script(plain)
            method = "script"
        except Exception:  # any scripting failure: tracing is equivalent for a static graph
            scripted = torch.jit.trace(plain, example, check_trace=False)
            method = "trace"
        torch.jit.save(scripted, str(path))
    return {"torchscript_method": method}


def _onnx_exporter_options(name: str) -> dict[str, Any]:
    """``torch.onnx.export`` keyword arguments of each exporter, with a dynamic batch axis."""
    if name == "dynamo":
        batch = torch.export.Dim("batch")
        return {"dynamo": True, "external_data": False, "dynamic_shapes": ({0: batch},)}
    return {"dynamo": False, "dynamic_axes": {ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}}}


def check_opset(opset: int, exporter: str) -> None:
    """Refuse an opset the export cannot honour (:class:`ExportError`, one line)."""
    newest = _newest_legacy_opset()
    if opset != DYNAMO_OPSET and not MIN_OPSET <= opset <= newest:
        raise ExportError(
            f"--opset {opset} is not supported: choose {MIN_OPSET} to {newest} (the models' "
            f"bilinear upsampling needs opset {MIN_OPSET} or later)"
        )
    if exporter == "dynamo" and opset != DYNAMO_OPSET:
        raise ExportError(
            f"--opset {opset} with --onnx-exporter dynamo: that exporter writes opset "
            f"{DYNAMO_OPSET} only; use --onnx-exporter legacy (or auto) for opset {opset}"
        )


def _newest_legacy_opset() -> int:
    """The newest opset the legacy (TorchScript-based) exporter writes (20 on torch 2.13)."""
    try:
        from torch.onnx import _constants

        return int(_constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
    except (ImportError, AttributeError):  # pragma: no cover - other torch versions
        return 17


def file_opset(path: Path) -> int | None:
    """The default-domain opset that the ONNX file at ``path`` imports (None if none)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    versions = [entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")]
    return max(versions) if versions else None


def _write_onnx(
    plain: nn.Module, example: torch.Tensor, path: Path, opset: int, exporter: str
) -> dict[str, Any]:
    """Export ``plain`` to ``path`` at ``opset`` (checked: the file's own opset is recorded
    and must be the one asked for)."""
    check_opset(opset, exporter)
    names = {"input_names": [ONNX_INPUT], "output_names": [ONNX_OUTPUT], "opset_version": opset}
    errors = []
    if exporter != "auto":
        order: tuple[str, ...] = (exporter,)
    else:
        order = ("dynamo", "legacy") if opset == DYNAMO_OPSET else ("legacy",)
    for name in order:
        try:
            with _quiet(), contextlib.redirect_stderr(io.StringIO()):
                torch.onnx.export(
                    plain, (example,), str(path), **names, **_onnx_exporter_options(name)
                )
            written = file_opset(path)
            if written != opset:
                raise ExportError(f"it wrote opset {written}, not {opset}")
            return {"opset": written, "onnx_exporter": name}
        except Exception as err:  # the exporters raise many types; try the next or report
            first = (str(err).strip().splitlines() or [""])[0]
            errors.append(f"{name} exporter: {type(err).__name__}: {first}")
            for leftover in path.parent.glob(path.name + "*"):
                leftover.unlink()
    raise ExportError("ONNX export failed: " + "; ".join(errors))


def _write_state(plain: nn.Module, path: Path) -> dict[str, Any]:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in plain.state_dict().items()}
    save_file(state, str(path))
    return {}


def _reload(fmt: str, folder: Path, spec: ModelSpec) -> nn.Module:
    artifact = folder / ARTIFACTS[fmt]
    if fmt == "torchscript":
        with _quiet():
            return torch.jit.load(str(artifact), map_location="cpu").eval()
    if fmt == "onnx":
        import onnx

        onnx.checker.check_model(str(artifact))
        return OnnxModule(artifact)
    return load_state_export(folder, spec)


def parity_input(side: int, batch: int = 2, seed: int = PARITY_SEED) -> torch.Tensor:
    """The seeded ``(batch, 3, side, side)`` standard-normal input of the parity check."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, side, side, generator=generator)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b|`` (``inf`` when shapes differ or a value is not finite)."""
    if a.shape != b.shape:
        return float("inf")
    diff = (a.float() - b.float()).abs().max().item()
    return diff if diff == diff else float("inf")  # NaN -> inf


def _place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished temporary folder to ``out`` (replacing it only with ``overwrite``)."""
    backup = None
    if out.exists():
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        elif overwrite and out.is_dir():
            backup = out.with_name(f"{temp_prefix(out.name)}old.tmp")
            os.replace(out, backup)
        else:
            raise ExportError(f"output {out} already exists (use --overwrite to replace it)")
    os.replace(tmp, out)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def export_run(
    run: str | Path,
    fmt: str,
    out: str | Path,
    *,
    which: str = "best",
    tolerance: float = DEFAULT_TOLERANCE,
    opset: int = DEFAULT_OPSET,
    onnx_exporter: str = "auto",
    overwrite: bool = False,
    quantize: str | None = None,
    max_dice_drop: float | None = None,
    calibration_images: int | None = None,
    data: str | Path | None = None,
    val_limit: int | None = None,
) -> ExportResult:
    """Export the ``which`` checkpoint of ``run`` as ``fmt`` into the folder ``out``.

    Raises :class:`ExportError` (nothing written) when the output exists, the exporter fails,
    or the reloaded artifact's logits differ from the original model's by more than
    ``tolerance`` (max abs) on the seeded parity input. ``quantize="int8"`` (ONNX only) then
    quantises the checked float model and gates it on the run's validation Dice instead
    (:mod:`polypseg.deploy.quantize`; ``max_dice_drop``, ``calibration_images``, ``data``,
    ``val_limit``); a model that fails the gate is refused the same way.
    """
    from polypseg.deploy import quantize as quant

    if max_dice_drop is None:
        max_dice_drop = quant.DEFAULT_MAX_DICE_DROP
    if calibration_images is None:
        calibration_images = quant.DEFAULT_CALIBRATION_IMAGES
    quant.check_options(fmt, quantize, max_dice_drop, calibration_images)
    from polypseg.checkpoint import library_versions

    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: choose {', '.join(FORMATS)}")
    if onnx_exporter not in ONNX_EXPORTERS:
        raise ExportError(f"unknown ONNX exporter {onnx_exporter!r}: {', '.join(ONNX_EXPORTERS)}")
    if fmt == "onnx":
        check_opset(opset, onnx_exporter)
    if not tolerance >= 0.0:  # NaN too
        raise ExportError(f"--tolerance must be at least 0, got {tolerance}")
    out = Path(out)
    check_output_folder(out, "--out")  # a file in the way, a read-only disk: before any work
    _remove_leftovers(out)
    if out.exists() and not overwrite and not (out.is_dir() and not any(out.iterdir())):
        raise ExportError(f"output {out} already exists (use --overwrite to replace it)")
    opened = open_run(run, which)
    model, meta, spec, stem = opened.model, opened.checkpoint, opened.input, opened.stem
    side = spec.size
    example = parity_input(side)
    with torch.no_grad():
        reference = forward_logits(model, example)  # as evaluate and predict run it
        plain = frozen(model)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out)
    try:
        artifact = tmp / ARTIFACTS[fmt]
        try:
            with torch.no_grad():
                if fmt == "torchscript":
                    details = _write_torchscript(plain, example, artifact)
                elif fmt == "onnx":
                    details = _write_onnx(plain, example, artifact, opset, onnx_exporter)
                else:
                    details = _write_state(plain, artifact)
                apply_umask(artifact)  # safetensors writes 0600 whatever the umask
                reloaded = _reload(fmt, tmp, meta.model)
                layout = False if fmt == "onnx" else None  # torch ones: as predict runs them
                diff = max_abs_diff(forward_logits(reloaded, example, layout), reference)
                batch3 = forward_logits(
                    reloaded, parity_input(side, batch=3, seed=PARITY_SEED + 1), layout
                )
        except PolypsegError:
            raise
        except Exception as err:  # exporters and runtimes raise many types
            failed = write_error(out, err)
            if failed is not None:  # the disk, not the exporter
                raise failed from err
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ExportError(
                f"{fmt} export of {meta.variant!r} failed: {type(err).__name__}: {first}"
            ) from err
        if diff > tolerance:
            raise ExportError(
                f"parity check failed: {fmt} logits differ from the original model by "
                f"{diff:.3g} (max abs) > tolerance {tolerance:g} on a seeded "
                f"{tuple(example.shape)} input; nothing was written"
            )
        if tuple(batch3.shape) != (3, 1, side, side):
            raise ExportError(
                f"{fmt} export does not accept another batch size: (3, 3, {side}, {side}) "
                f"gave {tuple(batch3.shape)}; nothing was written"
            )
        quantization = None
        if quantize is not None:  # the float model passed parity: quantise and gate it
            quantization = quant.make_int8(
                artifact, stem, meta, reloaded, data=data, val_limit=val_limit,
                calibration_images=calibration_images, max_dice_drop=max_dice_drop,
            )
            details["parity_of"] = "the float ONNX model, before int8 quantisation"
        artifact_sha = file_sha256(artifact)
        source_sha = file_sha256(stem.with_suffix(".safetensors"))
        precision = quantization["scheme"] if quantization else "float32"
        checkpoint = meta.to_json()
        if quantization:
            metrics = quant.int8_metrics(quantization)
            metrics_from = (f"measured on this int8 model, {quantization['quality']['images']} "
                            "validation images")
        else:
            metrics = meta.metrics or {}
            metrics_from = "the checkpoint's, at the epoch it was saved"
        run_dir = opened.run_dir
        card, source_card = cards.make_card(checkpoint, run_dir, metrics, metrics_from)
        export_meta = {
            "format": EXPORT_FORMAT,
            "export_format": fmt,
            **cards.identity(meta.variant, source_sha, artifact_sha, fmt, precision),
            "precision": precision,
            "file": artifact.name,
            "sha256": artifact_sha,
            **meta.model.to_meta(),
            "input": {**spec.to_meta(), "layout": "NCHW float32 RGB, (x/255 - mean)/std"},
            "output": {"name": ONNX_OUTPUT, "shape": ["batch", 1, side, side], "kind": "logits"},
            "threshold": spec.threshold,
            **({"decision": checkpoint["decision"]} if "decision" in checkpoint else {}),
            "metrics": metrics,
            "card": card,
            "parameters": opened.params,
            "exported_parameters": count_parameters(plain),
            "source": {
                "checkpoint": stem.name,
                "sha256": source_sha,
                "epoch": meta.epoch,
                "created": meta.created,
                "metrics": meta.metrics or {},
                # the run's test evaluation (mask size, the field's suite): what a float export
                # computes; an int8 one computes something else
                **({"test_metrics": tested} if not quantization and run_dir is not None
                   and (tested := tested_metrics(run_dir)) else {}),
            },
            "opset": None,
            **details,
            "parity": {
                "max_abs_diff": diff,
                "tolerance": tolerance,
                "input_shape": list(example.shape),
                "seed": PARITY_SEED,
                "reference": "original zoo model, eval mode",
            },
            **({"quantization": quantization} if quantization else {}),
            "versions": {**library_versions(), **_export_versions(fmt)},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write_text(tmp / cards.CARD_FILE,
                          cards.export_readme(card, source_card, export_meta))
        atomic_write_json(tmp / EXPORT_META, export_meta)
        _place(tmp, out, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(out=out, artifact=out / ARTIFACTS[fmt], meta=export_meta)


def _remove_leftovers(out: Path) -> None:
    """Remove the temporary folders that killed exports to ``out`` left beside it; an old
    export set aside by an interrupted ``--overwrite`` is put back when ``out`` is missing."""
    backups = [p for p in stale_temps(out.parent, out.name) if p.name.endswith(".old.tmp")]
    if backups and not out.exists():
        os.replace(backups[-1], out)
    remove_stale_temps(out.parent, out.name)


def _export_versions(fmt: str) -> dict[str, str]:
    import importlib.metadata as md

    names = {"onnx": ("onnx", "onnxruntime", "onnxscript")}.get(fmt, ())
    versions = {}
    for name in names:
        with contextlib.suppress(md.PackageNotFoundError):
            versions[name] = md.version(name)
    return versions
