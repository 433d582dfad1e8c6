"""Silencing the exporters and the quantiser: their progress prints, warnings and log lines.

``torch.onnx`` and ``onnxruntime.quantization`` print progress to stdout, warn about every
graph rewrite and log at INFO; ``polypseg export`` reports one line of its own instead. Used by
:mod:`polypseg.deploy.export` and :mod:`polypseg.deploy.quantize`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet(logger: str | None = None) -> Iterator[None]:
    """Within: stdout discarded, warnings ignored, and ``logger`` (the root logger for
    ``None``) showing errors only; all three restored after, also when the block raises."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)
