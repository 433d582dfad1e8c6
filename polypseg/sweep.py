"""Rotation sweep: how predictions follow rotated inputs, for several runs on identical inputs.

For each test image ``x`` (mask ``y``) and angle ``a``, with ``pred`` the thresholded model
output and ``rot_a`` a rotation by ``a`` degrees counter-clockwise (:mod:`polypseg.geometry`):

* consistency ``Dice(rot_a(pred(x)), pred(rot_a(x)))``: 1 for a model exactly equivariant at
  ``a``;
* accuracy ``Dice(pred(rot_a(x)), rot_a(y))``: segmentation quality on the rotated image.

Both are scored only inside the inscribed disc (rotation fills the corners with zeros).
Interpolation: the normalised image is rotated bilinearly (the fill, 0, is the dataset's mean
colour after normalisation); the probability map ``pred(x)`` is rotated bilinearly and *then*
thresholded; the ground-truth mask is rotated by nearest neighbour. Multiples of 90 degrees use
the exact ``torch.rot90`` everywhere, so a p4 model scores consistency 1 there.

Batched: the rotations of one image by many angles form one forward batch; every run sees the
very same rotated tensors. Output ``sweep.json`` (per-angle summaries: mean, std, quartiles,
min, max per run and metric), ``sweep.csv`` (the same, one row per run x angle x metric) and
``sweep_images.csv`` (every image x angle x run).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from polypseg.atomic import atomic_write_json, atomic_write_text
from polypseg.errors import RunError
from polypseg.evaluation import rows_to_csv
from polypseg.metrics import summarize
from polypseg.options import Tta, look_up_tta
from polypseg.paths import portable_tree

FORMAT = "polypseg-sweep/1"
SWEEP_METRICS: tuple[str, ...] = ("consistency", "accuracy")
STAT_COLUMNS: tuple[str, ...] = ("mean", "std", "q1", "median", "q3", "min", "max", "n")
INTERPOLATION: dict[str, str] = {
    "image": "bilinear on the normalised image, zero fill (= mean colour)",
    "prediction": "bilinear on probabilities, then threshold",
    "mask": "nearest neighbour",
    "multiples_of_90": "exact torch.rot90",
    "scored_region": "pixel centres within size/2 - 0.5 of the image centre",
}


def _unique_names(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def default_out(run_paths: Sequence[Path]) -> Path:
    """``RUN/sweep`` for one run; ``PARENT/sweep`` (parent of the first run) for several."""
    from polypseg.paths import default_output

    first = Path(run_paths[0])
    return default_output(first / "sweep" if len(run_paths) == 1 else first.parent / "sweep")


def _check_compatible(loaded: list[Any]) -> None:
    first = loaded[0]
    for other in loaded[1:]:
        if other.size != first.size:
            raise RunError(
                f"runs {first.name} and {other.name} take inputs of {first.size} and "
                f"{other.size} px; sweep runs trained at one size together"
            )
        for key in ("mean", "std"):
            if getattr(other.input, key) != getattr(first.input, key):
                raise RunError(
                    f"runs {first.name} and {other.name} normalise images differently "
                    f"(input.{key}); they cannot share one set of rotated inputs"
                )


def sweep_runs(
    runs: Sequence[str | Path],
    data_dir: str | Path,
    angles: Sequence[float],
    subset: str = "test",
    split_file: str | Path | None = None,
    limit: int | None = None,
    out: str | Path | None = None,
    batch_size: int = 24,
    device: str = "auto",
    which: str = "best",
    tta: Tta | str | None = None,
    progress: bool | None = False,
    write: bool = True,
    channels_last: bool | None = None,
) -> dict[str, Any]:
    """Sweep every run over ``angles`` (degrees) on ``subset`` of the split; return the result.

    The split is ``split_file`` or else the first run's ``split.json``; runs trained on another
    split are flagged (``split_matches_training``). ``batch_size`` angles go through a model per
    forward pass. ``tta``: ``None`` or ``"rot90"`` (:func:`polypseg.options.look_up_tta`).
    ``channels_last``: the images' memory format in the models (``None``:
    channels-last on CPU, as in training). With ``write`` the files go to ``out`` (default:
    :func:`default_out`).

    Args:
        runs: run folders (or checkpoint stems), swept on the same tensors.
        data_dir: the dataset folder.
        angles: the angles in degrees.
        subset: the set of the split: ``train``, ``val`` or ``test``.
        split_file: the split file; ``None``: the first run's ``split.json``.
        limit: only the first ``limit`` images of the set; ``None``: all.
        out: the results folder; ``None``: :func:`default_out`.
        batch_size: rotated copies per forward pass.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        which: each run's checkpoint, ``best`` or ``last``.
        tta: ``None`` or ``rot90``.
        progress: show a progress bar; ``None``: only on a terminal.
        write: write the files (else only return the result).
        channels_last: the images' memory format in the models; ``None``: channels-last on CPU.
    """
    from polypseg.data import discover
    from polypseg.geometry import disc_mask
    from polypseg.opened import open_run
    from polypseg.training.datasets import choose_split, eval_dataset, subset_pairs
    from polypseg.training.performance import tune_allocator

    angles = _check_arguments(runs, angles)
    tta = look_up_tta(tta)
    tune_allocator()  # as training: reuse warm heap pages for the activations
    loaded = [open_run(r, which, device) for r in runs]
    names = _unique_names([r.name for r in loaded])
    _check_compatible(loaded)
    given_split = split_file or loaded[0].split_file
    if given_split is None:
        raise RunError(f"{runs[0]}: no split.json beside the checkpoint; pass --split-file")
    index = discover(data_dir)
    choice = choose_split(index, given_split)
    pairs = subset_pairs(index, choice.split, subset, limit)
    dataset = eval_dataset(pairs, loaded[0].size, loaded[0].depth)
    scores, image_rows = _sweep_scores(
        dict(zip(names, loaded, strict=True)), dataset, angles, batch_size,
        disc_mask(loaded[0].size), tta, progress, channels_last,
    )
    result = _result(loaded, names, angles, scores, subset, choice, index, data_dir, tta)
    if write:
        folder = Path(out) if out is not None else default_out([Path(r) for r in runs])
        _write_sweep(result, image_rows, folder)
    return result


def _check_arguments(runs: Sequence[str | Path], angles: Sequence[float]) -> list[float]:
    """``angles`` as floats; :class:`RunError` when there is no run or no angle."""
    if not runs:
        raise RunError("sweep needs at least one run folder")
    angles = [float(a) for a in angles]
    if not angles:
        raise RunError("sweep needs at least one angle")
    return angles


def _sweep_scores(
    runs: dict[str, Any],
    dataset: Any,
    angles: list[float],
    batch_size: int,
    disc: Any,
    tta: Tta | None,
    progress: bool | None,
    channels_last: bool | None,
) -> tuple[dict[str, dict[str, list[list[float]]]], list[dict[str, Any]]]:
    """Every image rotated by every angle through every run, under a progress bar.

    Returns ``(scores, image_rows)``: ``scores[name][metric][angle index]`` the per-image
    values, and one row per run x image x angle.

    Args:
        runs: the opened runs by their (unique) names, in order.
        dataset: the evaluation dataset (``image``, ``mask``, ``stem`` per item).
        angles: the angles in degrees.
        batch_size: angles per forward pass.
        disc: the ``(S, S)`` scored region (:func:`polypseg.geometry.disc_mask`).
        tta: ``None`` or :attr:`Tta.ROT90 <polypseg.options.Tta>` (looked up).
        progress: a progress bar (``None``: only on a terminal).
        channels_last: the images' memory format in the models (``None``: the default).
    """
    from polypseg.training.progress import bars, want_progress

    chunks = [angles[i : i + batch_size] for i in range(0, len(angles), batch_size)]
    scores = {name: {m: [[] for _ in angles] for m in SWEEP_METRICS} for name in runs}
    image_rows: list[dict[str, Any]] = []
    with bars(want_progress(progress)) as progress_bars:
        progress_bars.start("sweep", f"sweep {len(angles)} angles", total=len(dataset))
        for item in range(len(dataset)):
            sample = dataset[item]
            _score_image(sample, runs, chunks, disc, tta, channels_last, scores, image_rows)
            progress_bars.advance("sweep")
        progress_bars.finish("sweep")
    return scores, image_rows


def _score_image(
    sample: dict[str, Any],
    runs: dict[str, Any],
    chunks: list[list[float]],
    disc: Any,
    tta: Tta | None,
    channels_last: bool | None,
    scores: dict[str, dict[str, list[list[float]]]],
    image_rows: list[dict[str, Any]],
) -> None:
    """Score one image's rotations (``chunks`` of angles, one forward batch each) with every
    run; append to ``scores`` and ``image_rows``.

    Args:
        sample: the dataset item: ``image`` ``(3, S, S)``, ``mask`` ``(1, S, S)``, ``stem``.
        runs: the opened runs by name.
        chunks: the angles in forward batches.
        disc: the ``(S, S)`` scored region.
        tta: ``None`` or :attr:`Tta.ROT90 <polypseg.options.Tta>` (looked up).
        channels_last: the images' memory format in the models.
        scores: ``scores[name][metric][angle index]``, appended to.
        image_rows: one row per run x angle, appended to.
    """
    from polypseg.geometry import rotate_many
    from polypseg.inference import predict_probs
    from polypseg.metrics import binarize, dice

    x, y = sample["image"], sample["mask"]
    base = [predict_probs(r.model, x[None], tta=tta, channels_last=channels_last)
            for r in runs.values()]
    offset = 0
    for chunk in chunks:
        rotated_x = rotate_many(x, chunk, mode="bilinear")
        rotated_y = rotate_many(y, chunk, mode="nearest") * disc
        for (name, run), probs0 in zip(runs.items(), base, strict=True):
            probs = predict_probs(run.model, rotated_x, tta=tta, channels_last=channels_last)
            pred = binarize(probs, run.threshold) * disc
            expected = binarize(rotate_many(probs0, chunk), run.threshold) * disc
            consistency = dice(expected, pred).tolist()
            accuracy = dice(pred, rotated_y).tolist()
            for j, angle in enumerate(chunk):
                scores[name]["consistency"][offset + j].append(consistency[j])
                scores[name]["accuracy"][offset + j].append(accuracy[j])
                image_rows.append({
                    "run": name, "stem": sample["stem"], "angle": angle,
                    "consistency": consistency[j], "accuracy": accuracy[j],
                })
        offset += len(chunk)


def _write_sweep(result: dict[str, Any], image_rows: list[dict[str, Any]], folder: Path) -> None:
    """Write ``sweep.json``, ``sweep.csv`` and ``sweep_images.csv`` into ``folder``;
    ``result["files"]`` names them."""
    paths = {
        "json": folder / "sweep.json",
        "csv": folder / "sweep.csv",
        "images_csv": folder / "sweep_images.csv",
    }
    result["files"] = {k: str(v) for k, v in paths.items()}
    atomic_write_json(paths["json"], portable_tree(result))
    atomic_write_text(paths["csv"], rows_to_csv(summary_rows(result)))
    atomic_write_text(paths["images_csv"], rows_to_csv(image_rows))


def _result(
    loaded: list[Any],
    names: list[str],
    angles: list[float],
    scores: dict[str, dict[str, list[list[float]]]],
    subset: str,
    choice: Any,
    index: Any,
    data_dir: str | Path,
    tta: Tta | None,
) -> dict[str, Any]:
    runs_out = []
    for name, run in zip(names, loaded, strict=True):
        per_angle = [
            {"angle": angle, **{m: summarize(scores[name][m][i]) for m in SWEEP_METRICS}}
            for i, angle in enumerate(angles)
        ]
        overall = {
            m: summarize(v for per in scores[name][m] for v in per) for m in SWEEP_METRICS
        }
        runs_out.append({
            "name": name,
            "run": str(run.run_dir or run.stem),
            "variant": run.variant,
            "params": run.checkpoint.params,
            "epoch": run.checkpoint.epoch,
            "threshold": run.threshold,
            "split_matches_training": choice.sha256 == run.split_sha256,
            "overall": overall,
            "per_angle": per_angle,
        })
    return {
        "format": FORMAT,
        "data_dir": str(data_dir),
        "dataset": index.name,
        "subset": subset,
        "n_images": len(scores[names[0]]["consistency"][0]),
        "size": loaded[0].size,
        "angles": angles,
        "tta": tta,
        "split": {"source": choice.source, "sha256": choice.sha256},
        "interpolation": INTERPOLATION,
        "runs": runs_out,
    }


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per run x angle x metric (the ``sweep.csv`` table)."""
    rows = []
    for run in result["runs"]:
        for entry in run["per_angle"]:
            for metric in SWEEP_METRICS:
                stats = entry[metric]
                rows.append({
                    "run": run["name"], "variant": run["variant"], "angle": entry["angle"],
                    "metric": metric,
                    **{k: stats[k] for k in STAT_COLUMNS},
                })
    return rows


def angle_summary(result: dict[str, Any], run: str, angle: float, metric: str) -> dict[str, Any]:
    """The summary of one run at one angle (``KeyError`` if absent).

    Args:
        result: a sweep result (:func:`sweep_runs`).
        run: the run's name in it.
        angle: the angle in degrees.
        metric: ``consistency`` or ``accuracy``.
    """
    for entry in result["runs"]:
        if entry["name"] == run:
            for per in entry["per_angle"]:
                if abs(per["angle"] - angle) < 1e-9:
                    return per[metric]
    raise KeyError(f"no {metric} at {angle} degrees for run {run!r}")


def format_summary(result: dict[str, Any], angles: Sequence[float] = (45.0, 90.0)) -> str:
    """Terminal lines: per run, mean consistency/accuracy at a few angles and overall."""
    lines = [
        f"sweep of {len(result['runs'])} run(s) on {result['dataset']} {result['subset']} "
        f"({result['n_images']} images, {len(result['angles'])} angles):"
    ]
    shown = [a for a in angles if any(abs(a - b) < 1e-9 for b in result["angles"])]
    for run in result["runs"]:
        parts = []
        for metric in SWEEP_METRICS:
            at = ", ".join(
                f"{a:g}°: {angle_summary(result, run['name'], a, metric)['mean']:.4f}"
                for a in shown
            )
            parts.append(f"{metric} {run['overall'][metric]['mean']:.4f} (all angles; {at})")
        lines.append(f"  {run['name']:<12} " + "; ".join(parts))
    return "\n".join(lines)
