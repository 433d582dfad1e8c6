"""CLI command ``polypseg report``: a thin wrapper over
:func:`polypseg.report.build.build_report`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer


def report(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="Run folders, sweep results (sweep.json or its folder), bench "
                       "quality results (quality-*.json or its folder), or folders of those "
                       "(e.g. the demo's).", show_default=False),
    ],
    out: Annotated[Path, typer.Option("--out", help="The HTML file to write.")] = Path(
        "report.html"),
    title: Annotated[str | None, typer.Option("--title", help="Page title.")] = None,
    gallery: Annotated[
        int, typer.Option("--gallery", min=0, help="Images per gallery row kind (least "
                          "consistent, lowest Dice) and model; 0: no pictures.")
    ] = 3,
    data: Annotated[
        list[str] | None,
        typer.Option("--data", metavar="[KEY=]DIR",
                     help="Dataset folder for the gallery where it is not the recorded one nor "
                     "../shared/data/<folder>: kvasir=DIR, cvc=DIR (repeat), or DIR for all."),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="Where the gallery's predictions run: cpu, cuda, "
                          "auto.")
    ] = "cpu",
) -> None:
    """One self-contained HTML report (tables, plots, galleries, provenance) of a study.\f

    Args:
        inputs: run folders, sweep results, bench quality results, or folders of those.
        out: the HTML file to write.
        title: the page title; ``None``: one made from the study.
        gallery: images per gallery row kind and model; 0: no pictures.
        data: dataset folders for the gallery: ``KEY=DIR`` per dataset, or one ``DIR`` for all;
            ``None``: the recorded folders.
        device: where the gallery's predictions run: ``cpu``, ``cuda`` or ``auto``.
    """
    from polypseg.report.build import build_report, parse_data

    command = "polypseg " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    folders = parse_data(data) if data else None
    written = build_report(inputs, out, title=title, gallery=gallery, device=device,
                           data=folders,
                           command=command,
                           progress=lambda message: typer.echo(message, err=True))
    typer.echo(f"wrote {written}")


def register(app: typer.Typer) -> None:
    """Add ``report`` to the main app."""
    app.command("report")(report)
