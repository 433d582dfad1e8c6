"""CLI command ``polypseg inspect``: what a trained run learned about its symmetry.

A thin layer over :func:`polypseg.inspection.inspect_run` (and
:func:`polypseg.plotting.plot_symmetry` for ``--plot``); torch and zoo are imported inside.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("inspect")(inspect)


def inspect(
    runs: Annotated[
        list[Path], typer.Argument(help="Run folders (or checkpoint stems) to inspect.")
    ],
    which: Annotated[
        str, typer.Option("--which", help="Checkpoint of each run: best or last.")
    ] = "best",
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Also draw the runs' learned symmetry to FILE.png/.svg."),
    ] = None,
    write: Annotated[
        bool,
        typer.Option("--write/--no-write", help="Write RUN/symmetry.json (the default)."),
    ] = True,
) -> None:
    """What a run learned about its symmetry, per layer; writes RUN/symmetry.json.

    Partial variants: each group element's probability and the kept subset; RPP variants: the
    norm ratio of the free to the equivariant filters. Other variants: nothing learned.\f

    Args:
        runs: run folders or checkpoint stems.
        which: the checkpoint of each run folder, ``best`` or ``last``.
        plot: also draw the runs' learned symmetry to ``FILE.png``/``.svg``; ``None``: no plot.
        write: write each run's ``symmetry.json`` (:func:`polypseg.inspection.inspect_run`).
    """
    from polypseg.errors import RunError
    from polypseg.inspection import format_inspection, inspect_run

    if which not in ("best", "last"):
        raise RunError(f"--which is best or last, got {which!r}")
    results = [inspect_run(run, which, write=write) for run in runs]
    for result in results:
        typer.echo(format_inspection(result))
        if "file" in result:
            typer.echo(f"  written: {result['file']}")
    if plot is not None:
        from polypseg.plotting import plot_symmetry

        for path in plot_symmetry(results, plot):
            typer.echo(f"plot: {path}")
