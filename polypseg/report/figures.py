"""The report's plots as ``data:`` URIs (SVG, glyphs as paths), so the page needs no file,
font or network: Dice versus angle (:func:`polypseg.plotting.sweep_figure`) and training
curves (:func:`polypseg.plotting.training_figure`)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from polypseg.report.inputs import SweepResult


def data_uri(data: bytes, media_type: str) -> str:
    """``data:MEDIA;base64,...``."""
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def figure_uri(fig: Any) -> str:
    """A matplotlib figure as an SVG data URI (closed afterwards)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    finally:
        plt.close(fig)
    return data_uri(buffer.getvalue(), "image/svg+xml")


def file_uri(path: Path) -> str:
    """An SVG or PNG file already written (e.g. the bench's Dice-vs-angle plot) as a URI."""
    media = "image/svg+xml" if path.suffix == ".svg" else "image/png"
    return data_uri(path.read_bytes(), media)


def sweep_plot(sweeps: Sequence[SweepResult], title: str | None = None) -> str:
    """Dice versus angle of every run of ``sweeps``, one figure."""
    from polypseg.plotting import sweep_figure

    return figure_uri(sweep_figure([s.doc for s in sweeps], title))


def training_plot(run_dirs: Sequence[Path], labels: Sequence[str]) -> str:
    """Loss, validation Dice and learning rate per epoch of ``run_dirs``."""
    from polypseg.plotting import training_figure

    return figure_uri(training_figure(run_dirs, labels))
