"""Run logs: ``RUN/metrics.csv`` (one row per epoch) and TensorBoard events in ``RUN/tb/``.

The CSV is rewritten atomically from the whole history after each epoch (the history lives in
the resume state), so an interrupted run never leaves a torn or duplicated row. TensorBoard
scalars use the global optimiser step as x; a resumed run purges events past its step.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from polypseg.atomic import atomic_write_text

#: Columns of ``metrics.csv``, in order.
CSV_COLUMNS: tuple[str, ...] = (
    "epoch", "step", "train_loss", "val_loss", "val_dice", "lr", "best_val_dice", "epoch_seconds",
)


def write_metrics_csv(path: str | Path, history: Sequence[dict[str, Any]]) -> None:
    """Write every epoch of ``history`` to ``path`` (atomically) with :data:`CSV_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k, "") for k in CSV_COLUMNS})
    atomic_write_text(path, buffer.getvalue())


def read_metrics_csv(path: str | Path) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv`` with every non-empty value as a float."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in rows]


def training_seconds(run_dir: str | Path) -> float | None:
    """Wall time a run has trained, over every sitting it was resumed in: the sum of
    ``epoch_seconds`` of ``RUN/metrics.csv`` (``None`` without one)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return None
    seconds = [r["epoch_seconds"] for r in read_metrics_csv(path) if "epoch_seconds" in r]
    return sum(seconds) if seconds else None


class TensorBoardLog:
    """A thin ``SummaryWriter`` wrapper that does nothing when ``enabled`` is false."""

    def __init__(self, log_dir: str | Path, enabled: bool = True, purge_step: int | None = None):
        self._writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Log each ``name: value`` at ``step``."""
        if self._writer is None:
            return
        for name, value in values.items():
            self._writer.add_scalar(name, value, global_step=step)

    def close(self) -> None:
        """Flush and close the event file."""
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
