"""Evaluation of a trained run on one subset of its split, or every image of a test set.

For each image (resized to the checkpoint's input size, normalised as in training): the model's
probabilities (optionally averaged over the four rot90 rotations, ``tta="rot90"``) are resized
back to the ground-truth mask's own size (bilinear, as ``polypseg predict`` does), and every
metric is taken there, so HD95 is in the dataset's original pixels:

* thresholded at the checkpoint's threshold (0.5): Dice, IoU, precision, recall, HD95
  (:mod:`polypseg.metrics`, MONAI, foreground only; HD95 NaN when a mask is empty, left out of
  its mean and counted in ``n_excluded``);
* on the probability map, the field's suite through pysodmetrics (:class:`polypseg.metrics.
  FieldMetrics`): mDice and mIoU averaged over 256 thresholds, S-measure, weighted F-measure,
  mean and max E-measure, MAE.

Beside them, the model's answer on images without a polyp (:mod:`polypseg.negatives_eval`):
the false-positive rate and mean predicted area on negatives cut from the same images (seeded,
fixed, their boxes recorded), and the frame-level sensitivity/specificity of the checkpoint's
"polyp present" decision (sections ``negatives`` and ``frame_level`` of the JSON; at the model's
input size, as ``predict`` and ``serve`` decide).

The images are the ``subset`` of the run's split, or of ``split_file``; ``subset="all"`` takes
every image of the data folder without a split (a test set in the field's layout,
``images/`` + ``masks/``). Without ``split_file``, a data folder that the run's split does not
describe (another dataset, or a copy without the split's files) is evaluated whole, and images
that were in the run's training or validation set are counted (``overlap_with_training``).

Writes ``OUT/<subset>[-tta-rot90].json`` (summary + per image; ``all-<dataset>`` for a whole
folder) and ``.csv`` (per image), atomically, and with ``save_maps`` each probability map as
an 8-bit PNG at its mask's size, ``OUT/maps/<stem>.png`` (what the field's MATLAB and Python
toolboxes read); ``OUT`` defaults to ``RUN/eval``.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from polypseg.atomic import atomic_write_json, atomic_write_text
from polypseg.errors import DataError, RunError
from polypseg.metrics import (
    FIELD_METRIC_NAMES,
    METRIC_NAMES,
    THRESHOLDS,
    FieldMetrics,
    per_image,
    probability_map_u8,
    summarize_all,
)
from polypseg.options import Tta, look_up_tta
from polypseg.paths import portable_tree

FORMAT = "polypseg-eval/1"
#: The subset meaning every image of the data folder, without a split.
ALL = "all"
#: Every metric of an evaluation, thresholded ones first.
ALL_METRICS: tuple[str, ...] = METRIC_NAMES + FIELD_METRIC_NAMES

#: The conventions, written into every result file.
CONVENTIONS: dict[str, str] = {
    "size": "every metric at the ground-truth mask's own size: the model's probabilities are "
    "resized back to it (bilinear) before anything is measured",
    "threshold": "foreground where probability >= threshold (0.5 unless the checkpoint says)",
    "both_empty": "Dice, IoU, precision, recall = 1; HD95 = NaN",
    "prediction_empty_only": "Dice, IoU, precision, recall = 0; HD95 = NaN",
    "target_empty_only": "Dice, IoU, precision, recall = 0; HD95 = NaN",
    "hd95": "pixels of the original mask; NaN values are left out of the mean "
    "(n_excluded counts them)",
    "field_suite": "pysodmetrics on the 8-bit probability map (round(255 p)), min-max "
    "normalised per image, mask > 128 of 0/255",
    "mdice_miou": f"Dice and IoU at {THRESHOLDS} thresholds of the normalised map, averaged "
    "over thresholds per image, then over images (PraNet's mean Dice and mean IoU)",
    "e_measure": "mean: the image's E-measure averaged over the thresholds; max: the image's "
    "E-measure at the threshold where the curve averaged over images peaks (its mean is the "
    "field's max E-measure)",
    "std": "population standard deviation over images (ddof=0)",
}


def result_stem(subset: str, tta: str | None) -> str:
    """``test`` or ``test-tta-rot90``: the file name of an evaluation, without suffix."""
    return subset + (f"-tta-{tta}" if tta else "")


def _pairs_and_split(
    index: Any, loaded: Any, subset: str, split_file: str | Path | None, limit: int | None
) -> tuple[list[Any], dict[str, Any]]:
    """The pairs to evaluate and the ``split`` record of the result."""
    from polypseg.data import SUBSETS
    from polypseg.training.datasets import choose_split, subset_pairs

    if subset not in (*SUBSETS, ALL):
        raise DataError(f"unknown subset {subset!r}: expected one of {', '.join(SUBSETS)}, {ALL}")
    if subset != ALL:
        given = split_file or loaded.split_file
        if given is None:
            raise RunError(
                f"{loaded.stem}: no split.json beside the checkpoint; pass --split-file (the "
                "split the model was trained with) or --split all (every image of --data)"
            )
        choice = choose_split(index, given)
        try:
            pairs = subset_pairs(index, choice.split, subset, limit)
        except DataError:
            if split_file is not None or subset != "test":
                raise
            # the run's own split does not describe this folder: a test set of the field
        else:
            return pairs, {
                "source": choice.source,
                "sha256": choice.sha256,
                "matches_training": choice.sha256 == loaded.split_sha256,
            }
    pairs = list(index.pairs)[:limit] if limit is not None else list(index.pairs)
    if not pairs:
        raise DataError(f"{index.root}: no image/mask pairs to evaluate")
    return pairs, {
        "source": f"every image of {index.root}",
        "sha256": None,
        "matches_training": False,
        "overlap_with_training": _overlap_with_training(index, loaded, pairs),
    }


def _overlap_with_training(index: Any, loaded: Any, pairs: list[Any]) -> int | None:
    """How many of ``pairs`` were in the run's training or validation set (same dataset and
    stem); ``None`` when the run has no split to compare with."""
    if loaded.split_file is None:
        return None
    from polypseg.data import load_split

    split = load_split(loaded.split_file)
    seen = {
        split.locate(entry)
        for subset in ("train", "val")
        for entry in split.sets[subset]
    }
    return sum((index.name, pair.stem) in seen for pair in pairs)


def evaluate_run(
    run: str | Path,
    data_dir: str | Path,
    subset: str = "test",
    split_file: str | Path | None = None,
    tta: Tta | str | None = None,
    out: str | Path | None = None,
    which: str = "best",
    device: str = "auto",
    batch_size: int = 8,
    limit: int | None = None,
    write: bool = True,
    progress: bool | None = False,
    save_maps: bool = False,
    channels_last: bool | None = None,
) -> dict[str, Any]:
    """Evaluate run folder (or checkpoint) ``run`` on ``subset`` of its split; return the result.

    Args:
        run: a run folder or checkpoint stem.
        data_dir: the dataset folder (any layout of :mod:`polypseg.data.layouts`).
        subset: ``train``, ``val``, ``test`` of the split, or ``all`` (every image, no split).
        split_file: overrides the run's own ``split.json``.
        tta: ``None`` (or ``"none"``) or ``"rot90"`` (:class:`polypseg.options.Tta`; a
            ``ValueError`` for anything else).
        out: folder of the results (default ``RUN/eval``).
        which: ``best`` or ``last`` checkpoint.
        device: ``auto``, ``cpu``, ``cuda``, ...
        batch_size: images per forward pass.
        limit: keep the first N images.
        write: write the JSON and CSV (the result's ``files`` names them).
        progress: a progress bar (``None``: only on a terminal).
        save_maps: also write ``OUT/maps/<stem>.png``, the 8-bit probability maps at mask size.
        channels_last: the images' memory format in the model (``None``: channels-last on CPU,
            as in training; :func:`polypseg.inference.resolve_channels_last`).
    """
    from polypseg.data import discover
    from polypseg.inspection import learned_summary
    from polypseg.negatives_eval import evaluate_negatives
    from polypseg.opened import open_run
    from polypseg.training.performance import tune_allocator

    tta = look_up_tta(tta)
    tune_allocator()  # as training: reuse warm heap pages for the activations
    if save_maps and not write:
        raise ValueError("save_maps needs write=True")
    loaded = open_run(run, which, device)
    index = discover(data_dir)
    pairs, split_record = _pairs_and_split(index, loaded, subset, split_file, limit)
    if split_record["sha256"] is None:  # every image of the folder: named by its dataset
        subset = f"{ALL}-{index.name}"
    folder = Path(out) if out is not None else _default_out(loaded.run_dir, loaded.stem)
    maps_tmp = _maps_temp(folder) if save_maps else None
    try:
        frames: list[tuple[float, float]] = []  # frame features (polypseg.negatives_eval)
        rows = _score_with_progress(
            loaded, pairs, subset, tta, batch_size, maps_tmp, progress, frames, channels_last
        )
    except BaseException:
        if maps_tmp is not None:
            shutil.rmtree(maps_tmp, ignore_errors=True)
        raise
    result = _result_document(loaded, data_dir, index.name, subset, tta, split_record, rows)
    result.update(evaluate_negatives(loaded, pairs, frames, tta, batch_size,
                                     [r["stem"] for r in rows]))
    learned = learned_summary(loaded.model)
    if learned is not None:  # what a partial / RPP model learned (polypseg inspect)
        result["learned_symmetry"] = learned
    if write:
        _write_result(result, rows, folder, result_stem(subset, tta), maps_tmp)
    return result


def _score_with_progress(
    loaded: Any,
    pairs: list[Any],
    subset: str,
    tta: Tta | None,
    batch_size: int,
    maps_dir: Path | None,
    progress: bool | None,
    frames: list[tuple[float, float]],
    channels_last: bool | None,
) -> list[dict[str, Any]]:
    """Score every pair under a progress bar (:func:`_score`); return the per-image rows.

    Args:
        loaded: the opened run (:func:`polypseg.opened.open_run`).
        pairs: the image/mask pairs to score, in order.
        subset: the subset's name, for the bar's label.
        tta: ``None`` or :attr:`Tta.ROT90 <polypseg.options.Tta>` (looked up).
        batch_size: images per forward pass.
        maps_dir: where to write the 8-bit probability maps, or ``None``.
        progress: a progress bar (``None``: only on a terminal).
        frames: filled with each image's frame features (:mod:`polypseg.negatives_eval`).
        channels_last: the images' memory format in the model (``None``: the default).
    """
    import torch

    from polypseg.training.datasets import eval_dataset
    from polypseg.training.progress import bars, want_progress

    with bars(want_progress(progress)) as progress_bars:
        progress_bars.start("eval", f"evaluate {loaded.name} {subset}", total=len(pairs))
        loader = torch.utils.data.DataLoader(
            eval_dataset(pairs, loaded.size, loaded.depth), batch_size=batch_size,
            shuffle=False,
        )
        return _score(loaded, pairs, loader, tta, maps_dir, progress_bars, frames, channels_last)


def _result_document(
    loaded: Any,
    data_dir: str | Path,
    dataset: str,
    subset: str,
    tta: Tta | None,
    split_record: dict[str, Any],
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """The evaluation's JSON document (before negatives and learned symmetry are added).

    Args:
        loaded: the opened run.
        data_dir: the dataset folder as given.
        dataset: the dataset's name (:func:`polypseg.data.discover`).
        subset: the subset evaluated (``all-DATASET`` for every image).
        tta: ``None`` or :attr:`Tta.ROT90 <polypseg.options.Tta>` (looked up).
        split_record: the split the pairs came from (:func:`_pairs_and_split`).
        rows: the per-image metrics.
    """
    return {
        "format": FORMAT,
        "run": str(loaded.run_dir or loaded.stem),
        "checkpoint": str(loaded.stem),
        "variant": loaded.variant,
        "params": loaded.checkpoint.params,
        "epoch": loaded.checkpoint.epoch,
        "data_dir": str(data_dir),
        "dataset": dataset,
        "subset": subset,
        "n_images": len(rows),
        "tta": tta,
        "threshold": loaded.threshold,
        "size": loaded.size,
        "metric_size": "mask",
        "split": split_record,
        "conventions": CONVENTIONS,
        "summary": summarize_all({name: [r[name] for r in rows] for name in ALL_METRICS}),
        "images": rows,
    }


def _write_result(
    result: dict[str, Any],
    rows: list[dict[str, Any]],
    folder: Path,
    stem: str,
    maps_tmp: Path | None,
) -> None:
    """Write ``FOLDER/STEM.json`` and ``.csv`` (and install the maps); ``result["files"]``
    names them.

    Args:
        result: the evaluation's document; gets ``files``.
        rows: the per-image metrics (the CSV).
        folder: the results folder.
        stem: the files' stem (:func:`result_stem`).
        maps_tmp: the temporary folder of the probability maps, or ``None``.
    """
    json_path, csv_path = folder / f"{stem}.json", folder / f"{stem}.csv"
    result["files"] = {"json": str(json_path), "csv": str(csv_path)}
    if maps_tmp is not None:
        result["files"]["maps"] = str(_install_maps(maps_tmp, folder / "maps"))
    atomic_write_json(json_path, portable_tree(result))
    atomic_write_text(csv_path, rows_to_csv(rows))


def _score(
    loaded: Any,
    pairs: list[Any],
    loader: Any,
    tta: Tta | None,
    maps_dir: Path | None,
    progress_bars: Any,
    frames: list[tuple[float, float]],
    channels_last: bool | None = None,
) -> list[dict[str, Any]]:
    """Per-image rows: every metric at each mask's own size (maps saved into ``maps_dir``).

    Args:
        loaded: the :class:`~polypseg.opened.OpenedModel` of the run.
        pairs: the image/mask pairs, whose masks are read again at their own size.
        loader: batches of ``pairs`` at the model's input size (``image`` ``(B, 3, S, S)``).
        tta: ``None`` or ``"rot90"``.
        maps_dir: where the 8-bit maps go (``None``: not saved).
        progress_bars: advanced by ``eval`` per batch.
        frames: receives each image's frame-level features at the input size
            (:func:`polypseg.negatives_eval.features_of`).
        channels_last: the images' memory format in the model (``None``: as on the device).
    """
    import torch

    from polypseg.data import read_mask
    from polypseg.deploy.predict import Placement, postprocess
    from polypseg.inference import predict_probs
    from polypseg.negatives_eval import features_of

    by_stem = {pair.stem: pair for pair in pairs}
    field = FieldMetrics()
    rows: list[dict[str, Any]] = []
    side = loaded.size
    for batch in loader:
        probs = predict_probs(loaded.model, batch["image"], tta=tta, channels_last=channels_last)
        frames.extend(features_of(probs, loaded.threshold))
        for i, stem in enumerate(batch["stem"]):
            mask = read_mask(by_stem[stem].mask)
            height, width = mask.shape
            back = Placement(height, width, 0, 0, side, side)  # the input was stretched
            prob = postprocess(probs[i : i + 1], [back])[0]
            pred = torch.from_numpy(prob >= loaded.threshold).float()[None, None]
            values = per_image(pred, torch.from_numpy(mask).float()[None, None])
            prob_u8 = probability_map_u8(prob)
            field.add(prob_u8, mask)
            if maps_dir is not None:
                _write_map(maps_dir / f"{stem}.png", prob_u8)
            row = {"stem": stem, **{name: values[name][0] for name in METRIC_NAMES}}
            row.update(height=height, width=width)
            row["mask_fraction"] = float(mask.mean())
            row["pred_fraction"] = float(pred.mean())
            rows.append(row)
        progress_bars.advance("eval", len(batch["stem"]))
    for name, values in field.table().items():
        for row, value in zip(rows, values, strict=True):
            row[name] = value
    return rows


def _maps_temp(folder: Path) -> Path:
    from polypseg.atomic import make_temp_dir

    return make_temp_dir(folder / "maps")


def _write_map(path: Path, prob_u8: np.ndarray) -> None:
    import cv2

    ok, encoded = cv2.imencode(".png", prob_u8)
    if not ok:
        raise RunError(f"cannot encode the probability map {path.name} as PNG")
    path.write_bytes(encoded.tobytes())


def _install_maps(tmp: Path, target: Path) -> Path:
    """Put the finished maps folder ``tmp`` in place of ``target`` (an old one is replaced)."""
    if target.exists():
        old = tmp.with_name(tmp.name + ".old")
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(target)
    return target


def _default_out(run_dir: Path | None, stem: Path) -> Path:
    from polypseg.paths import default_output

    return default_output((run_dir / "eval") if run_dir is not None else stem.parent / "eval")


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    """CSV text of a list of flat dicts (columns from the first row)."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def format_summary(result: dict[str, Any]) -> str:
    """A few lines for the terminal: metric mean ± std (n)."""
    lines = [
        f"{result['variant']} on {result['dataset']} {result['subset']} "
        f"({result['n_images']} images{', tta ' + result['tta'] if result['tta'] else ''}):"
    ]
    for name in ALL_METRICS:
        stats = result["summary"].get(name)
        if stats is None:  # an evaluation written before the field's suite
            continue
        if stats["mean"] is None:
            lines.append(f"  {name:<14} n/a (all {stats['n_excluded']} images excluded)")
            continue
        excluded = f", {stats['n_excluded']} excluded" if stats["n_excluded"] else ""
        lines.append(
            f"  {name:<14} {stats['mean']:.4f} ± {stats['std']:.4f}  (n={stats['n']}{excluded})"
        )
    from polypseg.negatives_eval import format_lines

    lines.extend(format_lines(result))
    overlap = result["split"].get("overlap_with_training")
    if result["split"].get("sha256") is None:
        lines.append(f"  {result['split']['source']} (no split)")
        if overlap:
            lines.append(f"  warning: {overlap} of these images were in the run's training or "
                         "validation set")
    elif not result["split"]["matches_training"]:
        lines.append("  warning: this split is not the one the model was trained with")
    return "\n".join(lines)
