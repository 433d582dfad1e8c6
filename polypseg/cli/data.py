"""CLI commands ``polypseg data check | split | download | preview``: thin layers over
:mod:`polypseg.data`, printing rich tables. Library imports happen inside each command so that
``polypseg --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from polypseg.data.check import CheckReport
    from polypseg.data.layouts import DatasetIndex
    from polypseg.data.splits import Split

data_app = typer.Typer(
    name="data",
    help="Dataset folders: check them, split them, download them, preview them.",
    no_args_is_help=True,
)

DatasetOption = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        help="kvasir-seg, cvc-clinicdb, cvc-colondb, etis-laribpolypdb or cvc-300 (the "
        "registry, docs/data.md); default: detected from folder name, layout, file names.",
    ),
]
SeedOption = Annotated[int, typer.Option("--seed", min=0, help="Random seed of the split.")]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.add_typer(data_app, name="data")


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _say(console: Console, text: str, style: str | None = None) -> None:
    """Print plain text: no markup, no wrapping (paths stay whole and greppable)."""
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def _progress(
    description: str, total: int | None, unit_bytes: bool = False
) -> Iterator[Callable[[int, int | None], None]]:
    """A rich progress bar on stderr; yields ``update(completed, total=None)``."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    counter = DownloadColumn() if unit_bytes else MofNCompleteColumn()
    columns = (TextColumn("{task.description}"), BarColumn(), counter, TimeRemainingColumn())
    with Progress(*columns, console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)

        def update(completed: int, new_total: int | None = None) -> None:
            bar.update(task, completed=completed, total=new_total or total)

        yield update


def _index(folder: Path, dataset: str | None) -> DatasetIndex:
    from polypseg.data.layouts import discover

    return discover(folder, dataset)


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


# --- check -----------------------------------------------------------------------------------


def _how_detected(detected_by: str) -> str:
    if detected_by == "given":
        return "as given with --dataset"
    return f"by {detected_by}; override with --dataset"


def _of_official(report: CheckReport) -> str:
    official = report.official_images()
    return f" of the official release's {official}" if official is not None else ""


def _summary_rows(report: CheckReport) -> list[tuple[str, str]]:
    from polypseg.data.check import UNCERTAIN_RANGE
    from polypseg.data.layouts import LAYOUTS
    from polypseg.data.text import format_ranges

    index = report.index
    layout = next(lay for lay in LAYOUTS if lay.name == index.layout)
    rows = [
        ("folder", str(index.root)),
        ("dataset", f"{index.name} ({_how_detected(index.detected_by)})"),
        ("layout", f"{layout.name} ({layout.describe()})"),
        ("images", str(len(index.pairs)) + _of_official(report)),
        ("unmatched files", str(len(index.unmatched))),
        ("unreadable files", str(len(report.unreadable))),
        ("size mismatches", str(len(report.mismatched))),
        ("empty masks", str(len(report.empty_masks))),
    ]
    lo, hi = UNCERTAIN_RANGE
    share = report.uncertain_pixels / report.mask_pixels if report.mask_pixels else 0.0
    rows.append(
        (
            "non-binary masks",
            f"{len(report.non_binary)} (thresholded at 127; {_percent(share)} of all mask "
            f"pixels in {lo}-{hi})",
        )
    )
    stats = report.foreground_stats()
    if stats:
        rows.append(("polyp fraction", "  ".join(f"{k} {_percent(v)}" for k, v in stats.items())))
    if index.sequences:
        missing = report.missing_frames()
        text = f"{len(index.sequences)} ({format_ranges(index.sequences)})"
        if missing:
            text += f"; frames absent from them: {format_ranges(missing)}"
        rows.append(("sequences", text))
    if index.bboxes is not None:
        rows.append(("bounding boxes", f"{index.bboxes.name}: {report.bbox_entries} entries"))
    if index.ignored:
        rows.append(("ignored files", f"{len(index.ignored)} (not images)"))
    return rows


def _print_report(console: Console, report: CheckReport) -> None:
    from rich.table import Table

    summary = Table(title="Dataset check", show_header=False)
    summary.add_column("item", style="bold")
    summary.add_column("value", overflow="fold")
    for key, value in _summary_rows(report):
        summary.add_row(key, value)
    console.print(summary)
    sizes = Table(title="Image sizes (width x height)")
    sizes.add_column("size")
    sizes.add_column("images", justify="right")
    common = report.sizes.most_common()
    for (width, height), count in common[:10]:
        sizes.add_row(f"{width}x{height}", str(count))
    if len(common) > 10:
        sizes.add_row(f"{len(common) - 10} other sizes", str(sum(c for _, c in common[10:])))
    console.print(sizes)
    for note in report.suspicious_masks()[:5]:
        _say(console, f"note: non-binary mask {note.describe()}")
    for path in report.index.ignored[:5]:
        _say(console, f"note: ignored {path} (not an image)")


@data_app.command()
def check(
    folder: Annotated[Path, typer.Argument(help="Dataset folder, in any supported layout.")],
    dataset: DatasetOption = None,
) -> None:
    """Read every image and mask of FOLDER; report layout, counts, sizes, masks, sequences.

    Exits with status 1 and a list of every problem when the dataset is not usable as it is.
    """
    from polypseg.data.check import check_dataset

    console = _console()
    index = _index(folder, dataset)
    with _progress("checking", len(index.pairs)) as update:
        report = check_dataset(index, progress=update)
    _print_report(console, report)
    where = f" in {len(index.sequences)} sequences" if index.sequences else ""
    head = f"{index.name}: {len(index.pairs)} images{where}"
    if report.ok:
        _say(console, f"{head}, no problems", style="green")
        return
    problems = report.problems
    _say(console, f"{head}, {len(problems)} problem(s):", style="red")
    for line in problems:
        _say(console, f"  - {line}")
    raise typer.Exit(1)


# --- split -----------------------------------------------------------------------------------


def _write_split(split: Split, path: Path, force: bool) -> str:
    """Save ``split`` unless a different split is already there; returns what happened."""
    from polypseg.data.splits import load_split
    from polypseg.errors import PolypsegError, RunError

    if path.exists():
        try:
            same = load_split(path).sha256() == split.sha256()
        except PolypsegError:
            same = False
        if same:
            split.source = path
            return "unchanged"
        if not force:
            raise RunError(
                f"{path}: holds a different split; runs may depend on it. Pass --force to "
                "replace it, or choose another --out"
            )
    split.save(path)
    return "written"


def _split_table(rows: list[tuple[str, Split, Path, str]]) -> None:
    from rich.table import Table

    from polypseg.data.splits import SUBSETS

    table = Table(title=f"Split: {rows[0][1].dataset}, {rows[0][1].rule}")
    table.add_column("split")
    for name in SUBSETS:
        table.add_column(name, justify="right")
    for label, split, _path, _status in rows:
        counts = split.counts()
        total = sum(counts.values())
        cells = []
        for name in SUBSETS:
            cell = f"{counts[name]} ({_percent(counts[name] / total)})"
            if split.groups:
                cell += f"\n{len(split.groups[name])} seq"
            cells.append(cell)
        table.add_row(label, *cells)
    console = _console()
    console.print(table)
    for label, split, path, status in rows:
        _say(console, f"{label}: {path} ({status}; sha256 {split.sha256()[:12]})")


@data_app.command()
def split(
    folders: Annotated[
        list[Path],
        typer.Argument(help="Dataset folder; two folders (two datasets) make a combined split."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Split file to write (default: splits/<dataset>-seed<S>.json); with --folds K, "
            "one file per fold named <out>-k<K>-fold<F>.json.",
        ),
    ] = None,
    folds: Annotated[
        int | None, typer.Option("--folds", min=3, help="Write a K-fold split (K files).")
    ] = None,
    seed: SeedOption = 0,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset",
            help="kvasir-seg or cvc-clinicdb, once per folder; default: detected.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing, different split file.")
    ] = False,
) -> None:
    """Make the benchmark split of one dataset (or two, combined) and write it as JSON.

    Kvasir-SEG: random 80/10/10 by image.
    CVC-ClinicDB: by video sequence, about 70/15/15 of frames.
    K-fold: fold F tests on fold F and validates on fold F+1 (mod K).
    Later commands take the file with --split-file.\f

    Args:
        folders: one dataset folder, or two for a combined split over both.
        out: the split file; ``None``: ``splits/<dataset>-seed<S>.json``; with ``folds`` the stem of
            one file per fold.
        folds: K of a K-fold split (at least 3); ``None``: the dataset's own benchmark split.
        seed: seed of the shuffles that make the split.
        dataset: the registry name of each folder, in order; ``None``: detected from the folders.
        force: replace an existing split file that holds a different split (an identical one is kept
            as it is).
    """
    from polypseg.data.splits import (
        default_split_path,
        fold_path,
        make_combined_split,
        make_kfold,
        make_split,
    )
    from polypseg.errors import DataError

    names = dataset or []
    if names and len(names) != len(folders):
        raise DataError(f"give --dataset once per folder ({len(folders)}), or not at all")
    indexes = [_index(f, names[i] if names else None) for i, f in enumerate(folders)]
    for index in indexes:
        for problem in index.problems:
            _say(_console(stderr=True), f"warning: {problem}", style="yellow")

    def build(fold: int | None) -> Split:
        if len(indexes) > 1:
            return make_combined_split(indexes, seed, folds, fold)
        if folds is None or fold is None:
            return make_split(indexes[0], seed)
        return make_kfold(indexes[0], folds, fold, seed)

    fold_ids: list[int | None] = [None] if folds is None else list(range(folds))
    splits = [build(fold) for fold in fold_ids]
    base = out or default_split_path(splits[0].dataset, seed)
    rows = []
    for fold, current in zip(fold_ids, splits, strict=True):
        path = base if fold is None or folds is None else fold_path(base, folds, fold)
        status = _write_split(current, path, force)
        rows.append(("all" if fold is None else f"fold {fold}", current, path, status))
    _split_table(rows)


# --- download --------------------------------------------------------------------------------


@data_app.command()
def download(
    name: Annotated[str, typer.Argument(help="A dataset of the registry (docs/data.md): "
                                        "kvasir-seg, cvc-clinicdb, cvc-colondb, ...")],
    dest: Annotated[
        Path, typer.Option("--dest", help="Folder that receives <Dataset>/ (e.g. data/).")
    ] = Path("data"),
    url: Annotated[
        str | None, typer.Option("--url", help="Download from this URL (http, https, file).")
    ] = None,
    archive: Annotated[
        Path | None, typer.Option("--archive", help="Use a zip/tar archive you already have.")
    ] = None,
    sha256: Annotated[
        str | None, typer.Option("--sha256", help="Expected SHA-256 of the archive.")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the server.")
    ] = 10.0,
) -> None:
    """Download a dataset's official archive (or use --archive) into DEST/<Dataset>.

    The archive's SHA-256 is checked against the recorded one or --sha256 (else printed).
    It is unpacked in a temporary folder and moved into place only when complete.
    Nothing is left behind on failure.\f

    Args:
        name: the dataset's registry name (``kvasir-seg``, ``cvc-clinicdb``, ...).
        dest: the folder that receives ``<Dataset>/``.
        url: download from this URL (http, https, file) instead of the registry's.
        archive: a zip/tar archive already on disk, used instead of a download.
        sha256: the archive's expected SHA-256 (hex); ``None``: the registry's, if it records one.
        timeout: seconds to wait for the server before giving up.
    """
    from polypseg.data.download import SOURCES, download_dataset
    from polypseg.data.layouts import canonical_dataset

    console = _console()
    source = SOURCES[canonical_dataset(name)]
    with _progress(f"downloading {source.folder}", None, unit_bytes=True) as update:
        result = download_dataset(
            name, dest, url=url, archive=archive, sha256=sha256, timeout=timeout, progress=update
        )
    if result.verified:
        _say(console, f"sha256 {result.sha256} (verified)")
    else:
        _say(
            console,
            f"sha256 {result.sha256} (not verified: no checksum is recorded for {source.name}; "
            "keep this value and pass it as --sha256 next time)",
            style="yellow",
        )
    sequences = result.index.sequences
    where = f" in {len(sequences)} sequences" if sequences else ""
    _say(console, f"{source.name}: {len(result.index.pairs)} images{where} -> {result.path}")
    _say(console, f"terms: {source.terms}")


# --- preview ---------------------------------------------------------------------------------


@data_app.command()
def preview(
    folder: Annotated[Path, typer.Argument(help="Dataset folder, in any supported layout.")],
    out: Annotated[Path, typer.Option("--out", help="PNG file to write.")] = Path("preview.png"),
    n: Annotated[int, typer.Option("--n", min=1, help="Number of images.")] = 16,
    tile: Annotated[int, typer.Option("--tile", min=16, help="Side of each tile, pixels.")] = 256,
    seed: Annotated[
        int | None, typer.Option("--seed", min=0, help="Random sample; default: evenly spaced.")
    ] = None,
    split_file: Annotated[
        Path | None, typer.Option("--split-file", help="Only images of a split file's --subset.")
    ] = None,
    subset: Annotated[str, typer.Option("--subset", help="train, val or test.")] = "test",
    dataset: DatasetOption = None,
) -> None:
    """Write a grid of images with their mask outlines (green) to a PNG file.\f

    Args:
        folder: the dataset folder, in any supported layout.
        out: the PNG file to write.
        n: number of images in the grid.
        tile: side of each square tile, in pixels.
        seed: seed of a random sample; ``None``: evenly spaced images.
        split_file: take the images of ``subset`` of this split file only; ``None``: the whole
            folder.
        subset: ``train``, ``val`` or ``test`` (with ``split_file``).
        dataset: the registry name of the folder; ``None``: detected.
    """
    from polypseg.data.preview import make_grid, pick, save_png
    from polypseg.data.splits import load_split, select

    index = _index(folder, dataset)
    pairs = index.pairs
    if split_file is not None:
        pairs = select(index, load_split(split_file), subset)
    chosen = pick(pairs, n, seed)
    save_png(out, make_grid(chosen, tile))
    _say(_console(), f"wrote {out} ({len(chosen)} of {len(pairs)} images, {index.name})")
