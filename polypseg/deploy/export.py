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
import os
import shutil
import time
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
from polypseg.checkpoint import CheckpointMeta, ModelSpec
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
from polypseg.deploy.quiet import quiet
from polypseg.errors import PolypsegError
from polypseg.hashing import file_sha256
from polypseg.inference import forward_logits
from polypseg.opened import OpenedModel, frozen, open_run
from polypseg.options import ExportFormat, OnnxExporter, Quantization, look_up_option
from zoo import count_parameters

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


def _write_torchscript(plain: nn.Module, example: torch.Tensor, path: Path) -> dict[str, Any]:
    with quiet("torch.onnx"):
        try:
            scripted = torch.jit.script(plain)
            method = "script"
        except Exception:  # any scripting failure: tracing is equivalent for a static graph
            scripted = torch.jit.trace(plain, example, check_trace=False)
            method = "trace"
        torch.jit.save(scripted, str(path))
    return {"torchscript_method": method}


def _onnx_exporter_options(name: OnnxExporter) -> dict[str, Any]:
    """``torch.onnx.export`` keyword arguments of each exporter, with a dynamic batch axis."""
    if name is OnnxExporter.DYNAMO:
        batch = torch.export.Dim("batch")
        return {"dynamo": True, "external_data": False, "dynamic_shapes": ({0: batch},)}
    return {"dynamo": False, "dynamic_axes": {ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}}}


def check_opset(opset: int, exporter: OnnxExporter | str) -> None:
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
    plain: nn.Module, example: torch.Tensor, path: Path, opset: int, exporter: OnnxExporter
) -> dict[str, Any]:
    """Export ``plain`` to ``path`` at ``opset`` (checked: the file's own opset is recorded
    and must be the one asked for)."""
    check_opset(opset, exporter)
    names = {"input_names": [ONNX_INPUT], "output_names": [ONNX_OUTPUT], "opset_version": opset}
    errors = []
    dynamo, legacy = OnnxExporter.DYNAMO, OnnxExporter.LEGACY
    if exporter is not OnnxExporter.AUTO:
        order: tuple[OnnxExporter, ...] = (exporter,)
    else:
        order = (dynamo, legacy) if opset == DYNAMO_OPSET else (legacy,)
    for name in order:
        try:
            with quiet("torch.onnx"), contextlib.redirect_stderr(io.StringIO()):
                torch.onnx.export(
                    plain, (example,), str(path), **names, **_onnx_exporter_options(name)
                )
            written = file_opset(path)
            if written != opset:
                raise ExportError(f"it wrote opset {written}, not {opset}")
            return {"opset": written, "onnx_exporter": name.value}
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


def _reload(fmt: ExportFormat, folder: Path, spec: ModelSpec) -> nn.Module:
    artifact = folder / ARTIFACTS[fmt]
    if fmt is ExportFormat.TORCHSCRIPT:
        with quiet("torch.onnx"):
            return torch.jit.load(str(artifact), map_location="cpu").eval()
    if fmt is ExportFormat.ONNX:
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


@dataclass(frozen=True)
class ExportOptions:
    """What :func:`export_run` was asked for, looked up and checked
    (:func:`check_export_options`)."""

    fmt: ExportFormat
    tolerance: float
    opset: int
    onnx_exporter: OnnxExporter
    quantize: Quantization | None
    max_dice_drop: float
    calibration_images: int


def check_export_options(
    fmt: ExportFormat | str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    opset: int = DEFAULT_OPSET,
    onnx_exporter: OnnxExporter | str = OnnxExporter.AUTO,
    quantize: Quantization | str | None = None,
    max_dice_drop: float | None = None,
    calibration_images: int | None = None,
) -> ExportOptions:
    """The options of an export, each looked up (a member or its string) and checked before any
    work: :class:`ExportError` (or ``QuantizationError``), one line, for one that cannot apply.

    Args:
        fmt: the export format.
        tolerance: the parity check's largest max-abs difference of logits (>= 0).
        opset: the ONNX opset (:func:`check_opset`; ONNX only).
        onnx_exporter: which ONNX exporter.
        quantize: ``None`` or ``"int8"`` (ONNX only).
        max_dice_drop: ``quantize``'s quality gate (default from :mod:`polypseg.deploy.quantize`).
        calibration_images: ``quantize``'s calibration set size (default likewise).
    """
    from polypseg.deploy import quantize as quant

    fmt = look_up_option(fmt, ExportFormat, "export format", error=ExportError)
    exporter = look_up_option(onnx_exporter, OnnxExporter, "ONNX exporter", error=ExportError)
    if max_dice_drop is None:
        max_dice_drop = quant.DEFAULT_MAX_DICE_DROP
    if calibration_images is None:
        calibration_images = quant.DEFAULT_CALIBRATION_IMAGES
    scheme = quant.check_options(fmt, quantize, max_dice_drop, calibration_images)
    if fmt is ExportFormat.ONNX:
        check_opset(opset, exporter)
    if not tolerance >= 0.0:  # NaN too
        raise ExportError(f"--tolerance must be at least 0, got {tolerance}")
    return ExportOptions(fmt, tolerance, opset, exporter, scheme, max_dice_drop,
                         calibration_images)  # fmt: skip


@dataclass
class _Artifact:
    """The artifact written into the temporary folder, loaded back and run on the parity
    inputs."""

    path: Path
    details: dict[str, Any]  # what the writer recorded (method, opset, exporter)
    module: nn.Module  # the artifact loaded back: (B, 3, S, S) -> (B, 1, S, S) logits
    diff: float  # max |logits - reference| on the parity input
    batch3_shape: tuple[int, ...]  # its output's shape for a batch of 3


def _write_artifact(
    plain: nn.Module, example: torch.Tensor, reference: torch.Tensor, folder: Path,
    options: ExportOptions, meta: CheckpointMeta, out: Path,
) -> _Artifact:  # fmt: skip
    """Write ``plain`` as ``options.fmt`` into ``folder``, load it back and run it on the
    parity inputs. Any failure is an :class:`ExportError` (or the disk's own error).

    Args:
        plain: the frozen model (eval mode).
        example: the parity input ``(2, 3, S, S)``; ``reference`` the original's logits on it.
        folder: the temporary export folder.
        options: the checked options.
        meta: the checkpoint's metadata (variant, model spec).
        out: the export's final folder (for the disk's errors).
    """
    fmt = options.fmt
    path = folder / ARTIFACTS[fmt]
    side = example.shape[-1]
    try:
        with torch.no_grad():
            if fmt is ExportFormat.TORCHSCRIPT:
                details = _write_torchscript(plain, example, path)
            elif fmt is ExportFormat.ONNX:
                details = _write_onnx(plain, example, path, options.opset, options.onnx_exporter)
            else:
                details = _write_state(plain, path)
            apply_umask(path)  # safetensors writes 0600 whatever the umask
            module = _reload(fmt, folder, meta.model)
            layout = False if fmt is ExportFormat.ONNX else None  # torch ones: as predict runs
            diff = max_abs_diff(forward_logits(module, example, layout), reference)
            batch3 = forward_logits(
                module, parity_input(side, batch=3, seed=PARITY_SEED + 1), layout
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
    return _Artifact(path, details, module, diff, tuple(batch3.shape))


def _check_parity(artifact: _Artifact, options: ExportOptions, example: torch.Tensor) -> None:
    """Refuse an artifact whose logits differ from the original's by more than the tolerance,
    or that takes only the parity input's batch size."""
    fmt, side = options.fmt, example.shape[-1]
    if artifact.diff > options.tolerance:
        raise ExportError(
            f"parity check failed: {fmt} logits differ from the original model by "
            f"{artifact.diff:.3g} (max abs) > tolerance {options.tolerance:g} on a seeded "
            f"{tuple(example.shape)} input; nothing was written"
        )
    if artifact.batch3_shape != (3, 1, side, side):
        raise ExportError(
            f"{fmt} export does not accept another batch size: (3, 3, {side}, {side}) "
            f"gave {artifact.batch3_shape}; nothing was written"
        )


def _export_meta(
    artifact: _Artifact, options: ExportOptions, opened: OpenedModel, exported_parameters: int,
    example: torch.Tensor, quantization: dict[str, Any] | None,
) -> tuple[dict[str, Any], str | None]:  # fmt: skip
    """``export.json``'s object and the run's own model card (``None`` without one).

    Args:
        artifact: the checked artifact (its details and parity difference).
        options: the checked options.
        opened: the exported checkpoint, opened (:func:`~polypseg.opened.open_run`).
        exported_parameters: the frozen module's parameter count.
        example: the parity input.
        quantization: :func:`polypseg.deploy.quantize.make_int8`'s entry, or ``None``.
    """
    from polypseg.checkpoint import library_versions
    from polypseg.deploy.quantize import int8_metrics

    meta, stem, spec, run_dir = opened.checkpoint, opened.stem, opened.input, opened.run_dir
    fmt, side = options.fmt, example.shape[-1]
    artifact_sha = file_sha256(artifact.path)
    source_sha = file_sha256(stem.with_suffix(".safetensors"))
    precision = quantization["scheme"] if quantization else "float32"
    checkpoint = meta.to_json()
    if quantization:
        metrics = int8_metrics(quantization)
        metrics_from = (f"measured on this int8 model, {quantization['quality']['images']} "
                        "validation images")
    else:
        metrics = meta.metrics or {}
        metrics_from = "the checkpoint's, at the epoch it was saved"
    card, source_card = cards.make_card(checkpoint, run_dir, metrics, metrics_from)
    export_meta = {
        "format": EXPORT_FORMAT,
        "export_format": fmt.value,
        **cards.identity(meta.variant, source_sha, artifact_sha, fmt.value, precision),
        "precision": precision,
        "file": artifact.path.name,
        "sha256": artifact_sha,
        **meta.model.to_meta(),
        "input": {**spec.to_meta(), "layout": "NCHW float32 RGB, (x/255 - mean)/std"},
        "output": {"name": ONNX_OUTPUT, "shape": ["batch", 1, side, side], "kind": "logits"},
        "threshold": spec.threshold,
        **({"decision": checkpoint["decision"]} if "decision" in checkpoint else {}),
        "metrics": metrics,
        "card": card,
        "parameters": opened.params,
        "exported_parameters": exported_parameters,
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
        **artifact.details,
        "parity": {
            "max_abs_diff": artifact.diff,
            "tolerance": options.tolerance,
            "input_shape": list(example.shape),
            "seed": PARITY_SEED,
            "reference": "original zoo model, eval mode",
        },
        **({"quantization": quantization} if quantization else {}),
        "versions": {**library_versions(), **_export_versions(fmt)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return export_meta, source_card


def _prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that cannot be written or is taken (without ``overwrite``), before any
    work; remove what killed exports to it left beside it."""
    check_output_folder(out, "--out")  # a file in the way, a read-only disk
    _remove_leftovers(out)
    if out.exists() and not overwrite and not (out.is_dir() and not any(out.iterdir())):
        raise ExportError(f"output {out} already exists (use --overwrite to replace it)")


def export_run(
    run: str | Path,
    fmt: ExportFormat | str,
    out: str | Path,
    *,
    which: str = "best",
    tolerance: float = DEFAULT_TOLERANCE,
    opset: int = DEFAULT_OPSET,
    onnx_exporter: OnnxExporter | str = OnnxExporter.AUTO,
    overwrite: bool = False,
    quantize: Quantization | str | None = None,
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
    ``val_limit``); a model that fails the gate is refused the same way. The options are
    checked first (:func:`check_export_options`).

    Args:
        run: a run folder or checkpoint stem.
        fmt: the export format (:class:`~polypseg.options.ExportFormat` or its string).
        out: the export folder to create.
        which: the run folder's checkpoint, ``best`` or ``last``.
        overwrite: replace ``out`` if it exists (else it is an :class:`ExportError`).
        tolerance, opset, onnx_exporter, quantize, max_dice_drop, calibration_images: as
            :func:`check_export_options` takes them.
        data: ``quantize``: the run's dataset folder (default: the one it recorded).
        val_limit: ``quantize``: at most this many validation images for the gate.
    """
    options = check_export_options(
        fmt, tolerance=tolerance, opset=opset, onnx_exporter=onnx_exporter, quantize=quantize,
        max_dice_drop=max_dice_drop, calibration_images=calibration_images,
    )  # fmt: skip
    out = Path(out)
    _prepare_out(out, overwrite)
    opened = open_run(run, which)
    model, meta, stem = opened.model, opened.checkpoint, opened.stem
    example = parity_input(opened.size)
    with torch.no_grad():
        reference = forward_logits(model, example)  # as evaluate and predict run it
        plain = frozen(model)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out)
    try:
        artifact = _write_artifact(plain, example, reference, tmp, options, meta, out)
        _check_parity(artifact, options, example)
        quantization = None
        if options.quantize is not None:  # the float model passed parity: quantise, gate it
            quantization = _quantize(artifact, options, stem, meta, data, val_limit)
        export_meta, source_card = _export_meta(
            artifact, options, opened, count_parameters(plain), example, quantization
        )
        atomic_write_text(tmp / cards.CARD_FILE,
                          cards.export_readme(export_meta["card"], source_card, export_meta))
        atomic_write_json(tmp / EXPORT_META, export_meta)
        _place(tmp, out, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(out=out, artifact=out / ARTIFACTS[options.fmt], meta=export_meta)


def _quantize(
    artifact: _Artifact, options: ExportOptions, stem: Path, meta: CheckpointMeta,
    data: str | Path | None, val_limit: int | None,
) -> dict[str, Any]:  # fmt: skip
    """Replace the checked float ONNX artifact by its int8 version if it passes the quality
    gate (:func:`polypseg.deploy.quantize.make_int8`); its ``quantization`` entry.

    Args:
        artifact: the float artifact, which passed parity.
        options: the checked options (calibration size, quality gate).
        stem: the exported checkpoint; ``meta`` its metadata.
        data: the run's dataset folder (default: the one it recorded).
        val_limit: at most this many validation images for the gate.
    """
    from polypseg.deploy import quantize as quant

    quantization = quant.make_int8(
        artifact.path, stem, meta, artifact.module, data=data, val_limit=val_limit,
        calibration_images=options.calibration_images, max_dice_drop=options.max_dice_drop,
    )  # fmt: skip
    artifact.details["parity_of"] = "the float ONNX model, before int8 quantisation"
    return quantization


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
