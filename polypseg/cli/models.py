"""CLI command ``polypseg models``: the table of zoo variants with parameters and MACs.

A thin layer over :func:`zoo.describe_variant` (the counts of a variant at any width from its
small models, so the 60M-parameter default steerable-flip is never built) and
:func:`zoo.match_params`; torch and zoo are imported inside the command so that ``polypseg
--help`` stays fast. The rows of each set of arguments are cached
(:mod:`polypseg.cli.tablecache`, keyed by the package versions and zoo's source), so a repeated
``polypseg models`` imports neither torch nor e2cnn.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any

import typer

from polypseg.errors import ModelError


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("models")(models)


def variant_rows(
    size: int, width: int | None, depth: int, match: str | None
) -> tuple[list[dict[str, Any]], int | None]:
    """One dict per variant (``zoo.describe`` plus ``name``, ``summary``, ``error``) and the
    parameter target of ``match`` (``None`` without it). A variant that cannot be built here
    (e.g. e2cnn missing) gets ``error`` instead of numbers.

    Args:
        size: side in pixels of the square input the MACs are counted for.
        width: first-stage width of every variant; ``None``: each variant's default.
        depth: the U-Net depth (``size`` must be a multiple of ``2**depth``).
        match: a variant whose parameter count (at ``width``, ``depth``) every variant's width is
            matched to; ``None``: no matching.
    """
    import zoo

    try:
        zoo.check_input_size(size, depth, name="--size")
    except ValueError as err:
        raise ModelError(str(err)) from None
    target = None
    if match is not None:
        try:
            target = zoo.describe_variant(match, width=width, depth=depth)["params"]
        except ValueError as err:
            raise ModelError(str(err)) from None
    from zoo.registry import unavailable

    rows = []
    for name in zoo.available():
        row: dict[str, Any] = {"name": name, "summary": zoo.variant(name).summary}
        reason = unavailable(name)
        if reason:
            rows.append(row | {"error": f"unavailable: {reason}"})
            continue
        try:
            w = width if target is None else zoo.match_params(name, target, depth=depth)
            row |= zoo.describe_variant(name, (size, size), width=w, depth=depth)
        except ValueError as err:
            raise ModelError(str(err)) from None
        rows.append(row)
    return rows, target


def cached_variant_rows(
    size: int, width: int | None, depth: int, match: str | None, use_cache: bool = True
) -> tuple[list[dict[str, Any]], int | None]:
    """:func:`variant_rows` through the table cache (only successful tables are stored).

    Args:
        size, width, depth, match: as :func:`variant_rows` takes them.
        use_cache: read and write the table cache (``~/.cache/polypseg``); false: compute afresh.
    """
    from polypseg.cli import tablecache

    args = {"size": size, "width": width, "depth": depth, "match": match}
    key = tablecache.cache_key("models", args) if use_cache else ""
    cached = tablecache.load("models", key) if use_cache else None
    if isinstance(cached, dict) and isinstance(cached.get("rows"), list):
        return cached["rows"], cached.get("target")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="e2cnn")  # its basis code's own warnings
        rows, target = variant_rows(size, width, depth, match)
    if use_cache:
        tablecache.store("models", key, {"rows": rows, "target": target})
    return rows, target


def models(
    size: Annotated[
        int, typer.Option("--size", min=1, help="Side of the square input the MACs are for.")
    ] = 256,
    width: Annotated[
        int | None,
        typer.Option(
            "--width",
            min=1,
            help="First-stage width in fields (channels / |G|). Default: each variant's own "
            "(16 for unet, 8 for the group variants, the talk's sizes).",
        ),
    ] = None,
    depth: Annotated[
        int, typer.Option("--depth", min=0, help="Number of 2x2 poolings (and upsamplings).")
    ] = 4,
    match_params: Annotated[
        str | None,
        typer.Option(
            "--match-params",
            metavar="VARIANT",
            help="Give every variant the width whose parameter count is closest to VARIANT's "
            "(at --width and --depth).",
        ),
    ] = None,
    cache: Annotated[
        bool,
        typer.Option("--cache/--no-cache", help="Reuse the table computed before for these "
                     "options and package versions (~/.cache/polypseg)."),
    ] = True,
) -> None:
    """List the model variants with their parameters and MACs per image.\f

    Args:
        size: side in pixels of the square input the MACs are counted for.
        width: first-stage width in fields; ``None``: each variant's default.
        depth: number of 2x2 poolings (and upsamplings).
        match_params: a variant whose parameter count every variant's width is matched to; ``None``:
            no matching.
        cache: reuse the table computed before for these options and package versions.
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    with console.status("building every variant to count it...", spinner="dots"):
        rows, target = cached_variant_rows(size, width, depth, match_params, cache)
    title = f"zoo variants: MACs per {size}x{size} image, depth {depth}"
    if target is not None:
        title += f", widths matched to {match_params} ({target:,} params)"
    wide = console.width >= 110  # else the summaries follow the table, one line each
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for header in ("variant", "group", "ch/field", "width", "params", "GMACs"):
        table.add_column(header, justify="left" if header in ("variant", "group") else "right",
                         no_wrap=True)
    if target is not None:
        table.add_column("vs target", justify="right", no_wrap=True)
    if wide:
        table.add_column("convolutions")
    for row in rows:
        summary = [row.get("error") or row["summary"]] if wide else []
        if "error" in row:
            cells = [row["name"], "", "", "", "", "", *([""] if target else [])]
            table.add_row(*cells, *summary, style="dim")
            continue
        cells = [
            row["name"],
            symmetry_group(row),
            str(row["group_size"]),
            str(row["width"]),
            f"{row['params']:,}",
            f"{row['macs'] / 1e9:,.2f}",
        ]
        if target is not None:
            cells.append(f"{row['params'] / target - 1:+.1%}")
        table.add_row(*cells, *summary)
    console.print(table)
    if not wide:
        for row in rows:
            console.print(f"  [bold]{row['name']}[/bold]: {row.get('error') or row['summary']}")


def symmetry_group(row: dict[str, Any]) -> str:
    """The group a variant's features transform under: the model's ``group``, except for
    SO(2) irreps fields (``steerable-so2``), whose model reports C4, the subgroup exact on the
    pixel grid."""
    if "SO(2)" in row.get("summary", ""):
        return "SO(2)"
    return str(row.get("group", ""))
