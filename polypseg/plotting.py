"""Figures: Dice versus rotation angle (from sweeps), training curves (from metrics.csv) and
the learned symmetry of partial / RPP runs (from ``symmetry.json``).

All are drawn with matplotlib's Agg backend and written as PNG and SVG side by side
(``fig.png`` and ``fig.svg``), atomically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from polypseg.atomic import atomic_write_with
from polypseg.errors import RunError

#: Colour of each variant (others cycle through matplotlib's palette).
VARIANT_COLOURS: dict[str, str] = {
    "unet": "#d62728",
    "p4": "#1f77b4",
    "p4m": "#2ca02c",
    "se2n12": "#9467bd",
    "steerable": "#ff7f0e",
    "steerable-flip": "#8c564b",
    "p4-partial": "#17becf",
    "p4-rpp": "#e377c2",
    "se2n12-partial": "#bcbd22",
}
PANEL_TITLES: dict[str, str] = {
    "consistency": "Consistency  Dice(rot(pred(x)), pred(rot(x)))",
    "accuracy": "Accuracy  Dice(pred(rot(x)), rot(y))",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def load_sweep(path: str | Path) -> dict[str, Any]:
    """A sweep result from ``sweep.json``, a folder holding one, or a run folder whose
    ``sweep/`` holds one; RunError otherwise."""
    path = Path(path)
    if path.is_dir():
        nested = path / "sweep" / "sweep.json"
        path = nested if nested.is_file() and not (path / "sweep.json").is_file() else path
        path = path if path.suffix == ".json" else path / "sweep.json"
    if not path.is_file():
        raise RunError(f"no sweep result at {path} (run `polypseg sweep` first)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunError(f"cannot read sweep result {path}: {err}") from None
    from polypseg.sweep import FORMAT

    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RunError(f"{path} is not a polypseg sweep result ({FORMAT})")
    return data


#: Line styles and markers that tell apart the curves of one variant (its first curve: solid).
_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D")
#: Colours for curves beyond the first of each variant (and for unknown variants): none is a
#: :data:`VARIANT_COLOURS` colour or a light tint of one.
EXTRA_COLOURS = ("#000000", "#7f7f7f", "#b8860b", "#000080", "#ff00ff", "#00a86b", "#8b0000",
                 "#5f9ea0", "#d2691e", "#4b0082")


def curve_styles(variants: Sequence[str | None]) -> list[dict[str, str]]:
    """A matplotlib style (``color``, ``linestyle``, ``marker``) per curve, every colour
    different: a variant's first curve takes its colour (:data:`VARIANT_COLOURS`), any other
    curve (``unet+rotaug``, ``unet-wide`` after ``unet``; unknown variants) the next of
    :data:`EXTRA_COLOURS`; a variant's later curves also get another line style and marker,
    so curves of one variant read as a family.
    """
    used: set[str] = set()
    extra = iter([*EXTRA_COLOURS, *(f"C{i}" for i in range(10))])
    seen: dict[str | None, int] = {}
    styles = []
    for v in variants:
        k = seen[v] = seen.get(v, -1) + 1
        colour = VARIANT_COLOURS.get(v or "") if k == 0 else None
        if colour is None or colour in used:
            colour = next((c for c in extra if c not in used), "0.3")
        used.add(colour)
        styles.append({"color": colour, "linestyle": _LINESTYLES[k % len(_LINESTYLES)],
                       "marker": _MARKERS[k % len(_MARKERS)]})
    return styles


def log_ticks(axis: Any) -> None:
    """Readable ticks on a log-scaled ``axis`` (``ax.xaxis``): labels at 1, 2 and 5 times each
    power of ten, written plainly (``0.02``, ``0.05``, ``0.1``), no labels on minor ticks, so
    tick labels never run together."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _boxes(fig: Any, texts: Sequence[Any]) -> list[Any]:
    renderer = fig.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in texts]


def separate_labels(fig: Any, labels: Sequence[Any], step: float = 2.0,
                    tries: int = 200) -> None:
    """Move annotation ``labels`` (``ax.annotate(..., textcoords="offset points")``) apart
    until no two overlap: each label, in order, steps down (then up) by ``step`` points from
    where it was put until its box meets no box placed before it.

    Args:
        fig: the matplotlib figure holding the labels (drawn to measure their boxes).
        labels: the annotations, placed in this order.
        step: points per move.
        tries: moves per label at most; the last position stays if none is free.
    """
    placed: list[Any] = []
    for label in labels:
        x0, y0 = label.xyann
        for attempt in range(tries):
            box = _boxes(fig, [label])[0]
            if not any(box.overlaps(other) for other in placed):
                break
            shift = step * (attempt // 2 + 1) * (-1 if attempt % 2 == 0 else 1)
            label.xyann = (x0, y0 + shift)
        placed.append(_boxes(fig, [label])[0])


def drawn_texts(fig: Any) -> list[Any]:
    """The visible, non-empty texts that drawing ``fig`` shows: figure texts and titles, axis
    labels and titles, the tick labels of the ticks in view, annotations and legend entries."""
    texts = [*fig.texts]
    for legend in fig.legends:
        texts += legend.get_texts()
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label,
                  *ax.texts]
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
        for axis in (ax.xaxis, ax.yaxis):
            for tick in axis._update_ticks():  # the ticks in view, as drawing places them
                texts += [label for label in (tick.label1, tick.label2) if label.get_visible()]
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def overlapping_texts(fig: Any) -> list[tuple[str, str]]:
    """Pairs of texts of ``fig`` (:func:`drawn_texts`) whose boxes overlap: what a figure must
    not have. Draw the figure first (``fig.canvas.draw()``)."""
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in drawn_texts(fig)]
    pairs = []
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            if box_a.width and box_b.width and box_a.overlaps(box_b):
                pairs.append((a, b))
    return pairs


def _run_variant(run_dir: Path) -> str | None:
    from polypseg.errors import RunError
    from polypseg.training.config import read_json_config

    try:
        return read_json_config(run_dir / "config.json").get("variant")
    except RunError:  # no config, or not one: the curve goes unlabelled by variant
        return None


def _save(fig: Any, out: Path) -> list[Path]:
    out = Path(out)
    written = []
    for suffix, dpi in ((".png", 150), (".svg", None)):
        target = out.with_suffix(suffix)
        atomic_write_with(
            target,
            lambda tmp, s=suffix, d=dpi: fig.savefig(
                tmp, format=s[1:], dpi=d, bbox_inches="tight"
            ),
        )
        written.append(target)
    return written


def _run_label(run: dict[str, Any]) -> str:
    params = run.get("params")
    size = f", {params / 1e3:.1f}k params" if isinstance(params, int) else ""
    name = run["name"]
    variant = run["variant"]
    return f"{name}{size}" if name == variant else f"{name} ({variant}{size})"


def plot_sweeps(
    sweeps: Sequence[dict[str, Any]], out: str | Path, title: str | None = None
) -> list[Path]:
    """Dice versus angle (:func:`sweep_figure`) written as PNG and SVG; returns both paths."""
    fig = sweep_figure(sweeps, title)
    try:
        return _save(fig, Path(out))
    finally:
        _pyplot().close(fig)


def sweep_figure(sweeps: Sequence[dict[str, Any]], title: str | None = None) -> Any:
    """Dice versus angle: one curve per run (mean, interquartile band), two panels
    (consistency, accuracy); exact multiples of 90 degrees are marked. Returns the figure
    (the caller closes it)."""
    plt = _pyplot()
    runs = [(sweep, run) for sweep in sweeps for run in sweep["runs"]]
    if not runs:
        raise RunError("no runs in the sweep results to plot")
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.8), sharex=True)
    styles = curve_styles([run["variant"] for _, run in runs])
    for panel, (ax, metric) in enumerate(zip(axes, ("consistency", "accuracy"), strict=True)):
        for (_, run), style in zip(runs, styles, strict=True):
            colour = style["color"]
            angles = [p["angle"] for p in run["per_angle"]]
            mean = [p[metric]["mean"] for p in run["per_angle"]]
            q1 = [p[metric]["q1"] for p in run["per_angle"]]
            q3 = [p[metric]["q3"] for p in run["per_angle"]]
            alpha = 0.18 if style["linestyle"] == "-" else 0.06  # a variant's hue, not stacked
            ax.fill_between(angles, q1, q3, color=colour, alpha=alpha, linewidth=0)
            ax.plot(angles, mean, linewidth=2, markersize=3.5, **style,
                    label=_run_label(run) if panel == 0 else None)
        for quarter in (0, 90, 180, 270, 360):
            ax.axvline(quarter, color="0.6", linewidth=0.8, linestyle=":", zorder=0)
        ax.set_title(PANEL_TITLES[metric], fontsize=11)
        ax.set_xlabel("rotation angle (degrees, counter-clockwise)")
        ax.set_xticks(range(0, 361, 45))
        ax.set_xlim(min(min(s["angles"]) for s in sweeps) - 5,
                    max(max(s["angles"]) for s in sweeps) + 5)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("Dice inside the inscribed disc\n(mean, band: 25-75% of images)")
    low = min(
        p[m]["q1"] for _, r in runs for p in r["per_angle"] for m in ("consistency", "accuracy")
        if p[m]["q1"] is not None
    )
    for ax in axes:
        ax.set_ylim(max(0.0, min(low, 0.9) - 0.05), 1.02)
    first = sweeps[0]
    fig.suptitle(
        title
        or f"Dice vs rotation: {first['dataset']} {first['subset']}, {first['n_images']} images, "
        f"{first['size']} px",
        fontsize=12,
    )
    fig.tight_layout()
    # outside the axes, right of them: never over a curve, the axis labels or the ticks
    fig.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=10)
    return fig


def plot_training(run_dirs: Sequence[str | Path], out: str | Path) -> list[Path]:
    """Training curves (:func:`training_figure`) written as PNG and SVG; returns both paths."""
    fig = training_figure(run_dirs)
    try:
        return _save(fig, Path(out))
    finally:
        _pyplot().close(fig)


def training_figure(
    run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None
) -> Any:
    """Training curves of one or more runs: loss (train solid, val dashed), validation Dice
    and learning rate versus epoch, from each ``RUN/metrics.csv``; each run is labelled by
    ``labels`` (default: its folder name). Returns the figure (the caller closes it)."""
    from polypseg.training.logs import read_metrics_csv

    plt = _pyplot()
    names = list(labels) if labels is not None else [Path(r).name for r in run_dirs]
    if len(names) != len(run_dirs):
        raise ValueError(f"{len(names)} labels for {len(run_dirs)} runs")
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    colours = [s["color"] for s in curve_styles([_run_variant(Path(r)) for r in run_dirs])]
    handles = []
    for run_dir, colour, name in zip(run_dirs, colours, names, strict=True):
        path = Path(run_dir) / "metrics.csv"
        if not path.is_file():
            plt.close(fig)
            raise RunError(f"no training log at {path} (is {run_dir} a run folder?)")
        rows = read_metrics_csv(path)
        if not rows:
            plt.close(fig)
            raise RunError(f"{path} has no epochs yet")
        epochs = [r["epoch"] for r in rows]
        handles += axes[0].plot(epochs, [r["train_loss"] for r in rows], color=colour,
                                label=name)
        axes[0].plot(epochs, [r["val_loss"] for r in rows], color=colour, linestyle="--")
        axes[1].plot(epochs, [r["val_dice"] for r in rows], color=colour, marker="o",
                     markersize=3, label=name)
        best = max(rows, key=lambda r: r["val_dice"])
        axes[1].scatter([best["epoch"]], [best["val_dice"]], color=colour, s=60, marker="*",
                        zorder=3)
        axes[2].plot(epochs, [r["lr"] for r in rows], color=colour, label=name)
    for ax, (label, title) in zip(
        axes,
        (("Dice + CE loss", "Loss (solid: train, dashed: val)"),
         ("Dice", "Validation Dice (star: best)"),
         ("learning rate", "Learning rate (end of epoch)")),
        strict=True,
    ):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=11)
        ax.grid(True, alpha=0.3)
    axes[2].set_yscale("log")
    fig.tight_layout()
    # one legend for the three panels (a colour per run), outside the axes, right of them
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
               fontsize=9, ncol=1 if len(handles) <= 14 else 2)
    return fig


def plot_symmetry(results: Sequence[dict[str, Any]], out: str | Path) -> list[Path]:
    """What runs learned about their symmetry (:func:`polypseg.inspection.inspect_run` results),
    one panel per run: for a partial variant a layers x group elements map of ``p(keep)``
    (crossed: dropped at evaluation), for an RPP variant a bar per layer of
    ``||W_free|| / ||W_eq||``. Runs with nothing learned are left out. Returns PNG and SVG."""
    shown = [r for r in results if r["summary"]["kind"] is not None]
    if not shown:
        raise RunError("none of these runs learns its symmetry (only *-partial and *-rpp do)")
    plt = _pyplot()
    height = max(3.0, 0.32 * max(len(r["layers"]) for r in shown) + 1.2)
    fig, axes = plt.subplots(1, len(shown), figsize=(4.6 * len(shown), height), squeeze=False)
    for ax, result in zip(axes[0], shown, strict=True):
        layers = result["layers"]
        labels = [row["layer"] for row in layers]
        if result["summary"]["kind"] == "subset":
            names = layers[0]["elements"]
            grid = [row["probabilities"] for row in layers]
            image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
            for i, row in enumerate(layers):
                for j, (name, p) in enumerate(zip(names, row["probabilities"], strict=True)):
                    dropped = name not in row["kept"]
                    ax.text(j, i, "x" if dropped else f"{p:.2f}", ha="center", va="center",
                            fontsize=7, color="white" if p < 0.6 else "black")
            ax.set_xticks(range(len(names)), names, fontsize=8)
            ax.set_xlabel("group element (x: dropped at evaluation)")
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="p(keep)")
        else:
            ratios = [row["ratio"] for row in layers]
            ax.barh(range(len(layers)), ratios, color=VARIANT_COLOURS.get(result["variant"]))
            ax.set_xlabel("||W_free|| / ||W_eq||")
            ax.invert_yaxis()
            ax.grid(True, axis="x", alpha=0.3)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        name, variant = result["name"], result["variant"]
        about = ", ".join(str(v) for v in (variant, result.get("dataset")) if v and v != name)
        ax.set_title(f"{name} ({about})" if about else name, fontsize=10)
    fig.suptitle("Learned symmetry per layer", fontsize=12)
    fig.tight_layout()
    try:
        return _save(fig, Path(out))
    finally:
        plt.close(fig)


def plot_fractions(
    rows: Sequence[dict[str, Any]],
    out: str | Path,
    title: str | None = None,
    variants: dict[str, str] | None = None,
) -> list[Path]:
    """Test Dice against the share of labelled images, one curve per entry: the mean at each
    share and its interval as error bars (``rows``: :func:`polypseg.bench.fractions.
    fraction_curves` of one dataset), the share on a log axis; PNG and SVG, legend outside the
    axes. Returns both paths.

    Args:
        rows: ``entry``, ``train_fraction``, ``mean``, ``ci_low``, ``ci_high`` per point.
        out: the path without suffix.
        title: the figure title.
        variants: entry -> variant, for the colours (:func:`curve_styles`).
    """
    plt = _pyplot()
    entries = list(dict.fromkeys(r["entry"] for r in rows))
    styles = curve_styles([(variants or {}).get(e, e) for e in entries])
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    try:
        for entry, style in zip(entries, styles, strict=True):
            points = sorted((r for r in rows if r["entry"] == entry),
                            key=lambda r: r["train_fraction"])
            x = [100 * r["train_fraction"] for r in points]
            y = [r["mean"] for r in points]
            err = [[r["mean"] - r["ci_low"] for r in points],
                   [r["ci_high"] - r["mean"] for r in points]]
            ax.errorbar(x, y, yerr=err, label=entry, capsize=3, linewidth=1.5, **style)
        ax.set_xscale("log")
        shares = sorted({100 * r["train_fraction"] for r in rows})
        ax.set_xticks(shares, [f"{s:g}%" for s in shares])
        ax.minorticks_off()
        ax.set_xlabel("share of the training split (nested subsets)")
        ax.set_ylabel("test Dice (mean, 95% interval)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                  fontsize="small")
        if title:
            ax.set_title(title, fontsize="medium")
        return _save(fig, Path(out))
    finally:
        plt.close(fig)
