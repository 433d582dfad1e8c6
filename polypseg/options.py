"""The application's string options, each declared once: the command line and the library use
these enums, and :func:`look_up_option` turns what a caller passed into a member.

Each option with a fixed set of values is a :class:`~zoo.options.StrOption` enum (zoo's: its
members compare equal to, hash and print as their strings, so a member and its string are
interchangeable as dictionary keys, in JSON and in file names). The command line declares its
options with these enums (typer lists their values as the choices); a library entry point takes
the member or its string and looks it up once, at its boundary, with :func:`look_up_option`
(zoo's one look-up, which raises the error class the caller names: ``ExportError``,
``DataError``, ...). Importing this module loads neither torch nor zoo's layers
(``zoo/__init__.py`` is lazy), so ``polypseg --help`` stays light.
"""

from __future__ import annotations

from collections.abc import Callable

from zoo.options import StrOption, look_up_option

__all__ = [
    "ExportFormat",
    "OnnxExporter",
    "Overlay",
    "Quantization",
    "StrOption",
    "Tta",
    "look_up_option",
    "look_up_tta",
]


class ExportFormat(StrOption):
    """The artifact of ``polypseg export`` (files: :data:`polypseg.deploy.bundle.ARTIFACTS`)."""

    TORCHSCRIPT = "torchscript"
    ONNX = "onnx"
    STATE = "state"  # safetensors of the plain module, rebuilt through zoo to load


class OnnxExporter(StrOption):
    """Which ``torch.onnx`` exporter writes an ONNX export."""

    AUTO = "auto"  # dynamo, falling back to legacy (legacy alone below opset 18)
    DYNAMO = "dynamo"  # torch.export-based
    LEGACY = "legacy"  # TorchScript-based


class Quantization(StrOption):
    """Quantisation of an ONNX export (:mod:`polypseg.deploy.quantize`)."""

    INT8 = "int8"  # static, calibrated on the run's training images, gated on validation Dice


class Tta(StrOption):
    """Test-time augmentation: none, or rot90 (the mean of the predictions on the four rotations
    by multiples of 90 degrees, each rotated back)."""

    NONE = "none"
    ROT90 = "rot90"


class Overlay(StrOption):
    """How ``polypseg predict`` draws masks (:func:`polypseg.deploy.predict.overlay`)."""

    OUTLINE = "outline"
    TINT = "tint"
    NONE = "none"


def look_up_tta(value: object, error: Callable[[str], Exception] = ValueError) -> Tta | None:
    """The test-time augmentation ``value`` names, ``None`` for none.

    ``None``, ``"none"`` and :attr:`Tta.NONE` all give ``None``, so that a result records
    ``"tta": null`` as it always did and ``if tta:`` reads as "with TTA"; ``"rot90"`` gives
    :attr:`Tta.ROT90` (equal to the string). Anything else raises ``error`` (one line naming
    the accepted values).
    """
    if value is None:
        return None
    tta = look_up_option(value, Tta, "tta", error=error)
    return None if tta is Tta.NONE else tta
