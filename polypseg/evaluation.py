"""Evaluation of a trained run on one subset of its split: per-image metrics, mean ± std.

For each image of the subset (resized to the checkpoint's input size, normalised as in
training): the model's probabilities (optionally averaged over the four rot90 rotations,
``tta="rot90"``), thresholded at the checkpoint's threshold (0.5), against the mask at the same
size. Metrics and their empty-mask conventions: :mod:`polypseg.metrics` (Dice, IoU, precision,
recall through MONAI, foreground only; HD95 NaN when a mask is empty, left out of its mean and
counted in ``n_excluded``).

Beside them, the model's answer on images without a polyp (:mod:`polypseg.negatives_eval`):
the false-positive rate and mean predicted area on negatives cut from the same images (seeded,
fixed, their boxes recorded), and the frame-level sensitivity/specificity of the checkpoint's
"polyp present" decision (sections ``negatives`` and ``frame_level`` of the JSON).

Writes ``OUT/<subset>[-tta-rot90].json`` (summary + per image) and ``.csv`` (per image),
atomically; ``OUT`` defaults to ``RUN/eval``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from polypseg.atomic import atomic_write_json, atomic_write_text
from polypseg.errors import RunError
from polypseg.metrics import METRIC_NAMES, binarize, per_image, summarize_all
from polypseg.paths import portable_tree

FORMAT = "polypseg-eval/1"

#: The empty-mask conventions, written into every result file.
CONVENTIONS: dict[str, str] = {
    "threshold": "foreground where probability >= threshold (0.5 unless the checkpoint says)",
    "both_empty": "Dice, IoU, precision, recall = 1; HD95 = NaN",
    "prediction_empty_only": "Dice, IoU, precision, recall = 0; HD95 = NaN",
    "target_empty_only": "Dice, IoU, precision, recall = 0; HD95 = NaN",
    "hd95": "pixels at the model's input size; NaN values are left out of the mean "
    "(n_excluded counts them)",
    "std": "population standard deviation over images (ddof=0)",
}


def result_stem(subset: str, tta: str | None) -> str:
    """``test`` or ``test-tta-rot90``: the file name of an evaluation, without suffix."""
    return subset + (f"-tta-{tta}" if tta else "")


def evaluate_run(
    run: str | Path,
    data_dir: str | Path,
    subset: str = "test",
    split_file: str | Path | None = None,
    tta: str | None = None,
    out: str | Path | None = None,
    which: str = "best",
    device: str = "auto",
    batch_size: int = 8,
    limit: int | None = None,
    write: bool = True,
    progress: bool | None = False,
    channels_last: bool | None = None,
) -> dict[str, Any]:
    """Evaluate run folder (or checkpoint) ``run`` on ``subset`` of its split; return the result.

    ``split_file`` overrides the run's own ``split.json``. ``limit`` keeps the first N images.
    ``progress``: a progress bar (``None``: only on a terminal). ``channels_last``: the images'
    memory format in the model (``None``: channels-last on CPU, as in training;
    :func:`polypseg.inference.resolve_channels_last`). With ``write`` the JSON and
    CSV go to ``out`` (default ``RUN/eval``) and the result's ``files`` names them.
    """
    import torch

    from polypseg.data import discover
    from polypseg.inference import check_tta, predict_probs
    from polypseg.inspection import learned_summary
    from polypseg.negatives_eval import evaluate_negatives, features_of
    from polypseg.training.datasets import choose_split, eval_dataset, subset_pairs
    from polypseg.training.performance import tune_allocator
    from polypseg.training.progress import bars, want_progress
    from polypseg.training.runs import load_run

    check_tta(tta)
    tune_allocator()  # as training: reuse warm heap pages for the activations
    loaded = load_run(run, which, device)
    index = discover(data_dir)
    given_split = split_file or loaded.split_file
    if given_split is None:
        raise RunError(
            f"{run}: no split.json beside the checkpoint; pass --split-file (the split the "
            "model was trained with)"
        )
    choice = choose_split(index, given_split)
    pairs = subset_pairs(index, choice.split, subset, limit)
    dataset = eval_dataset(pairs, loaded.size, loaded.depth)
    rows: list[dict[str, Any]] = []
    frames: list[tuple[float, float]] = []  # frame-level features (polypseg.negatives_eval)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    with bars(want_progress(progress)) as progress_bars:
        progress_bars.start("eval", f"evaluate {loaded.name} {subset}", total=len(pairs))
        for batch in loader:
            probs = predict_probs(loaded.model, batch["image"], tta=tta,
                                  channels_last=channels_last)
            preds = binarize(probs, loaded.threshold)
            masks = batch["mask"]
            values = per_image(preds, masks)
            frames.extend(features_of(probs, loaded.threshold))
            for i, stem in enumerate(batch["stem"]):
                row = {"stem": stem, **{name: values[name][i] for name in METRIC_NAMES}}
                row["mask_fraction"] = float(masks[i].mean())
                row["pred_fraction"] = float(preds[i].mean())
                rows.append(row)
            progress_bars.advance("eval", len(batch["stem"]))
    result: dict[str, Any] = {
        "format": FORMAT,
        "run": str(loaded.run_dir or loaded.stem),
        "checkpoint": str(loaded.stem),
        "variant": loaded.variant,
        "params": loaded.meta.params,
        "epoch": loaded.meta.epoch,
        "data_dir": str(data_dir),
        "dataset": index.name,
        "subset": subset,
        "n_images": len(rows),
        "tta": tta,
        "threshold": loaded.threshold,
        "size": loaded.size,
        "split": {
            "source": choice.source,
            "sha256": choice.sha256,
            "matches_training": choice.sha256 == loaded.split_sha256,
        },
        "conventions": CONVENTIONS,
        "summary": summarize_all({name: [r[name] for r in rows] for name in METRIC_NAMES}),
        "images": rows,
    }
    result.update(evaluate_negatives(loaded, pairs, frames, tta, batch_size,
                                     [r["stem"] for r in rows]))
    learned = learned_summary(loaded.model)
    if learned is not None:  # what a partial / RPP model learned (polypseg inspect)
        result["learned_symmetry"] = learned
    if write:
        folder = Path(out) if out is not None else _default_out(loaded.run_dir, loaded.stem)
        stem = result_stem(subset, tta)
        json_path, csv_path = folder / f"{stem}.json", folder / f"{stem}.csv"
        result["files"] = {"json": str(json_path), "csv": str(csv_path)}
        atomic_write_json(json_path, portable_tree(result))
        atomic_write_text(csv_path, rows_to_csv(rows))
    return result


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
    for name in METRIC_NAMES:
        stats = result["summary"][name]
        if stats["mean"] is None:
            lines.append(f"  {name:<9} n/a (all {stats['n_excluded']} images excluded)")
            continue
        excluded = f", {stats['n_excluded']} excluded" if stats["n_excluded"] else ""
        lines.append(
            f"  {name:<9} {stats['mean']:.4f} ± {stats['std']:.4f}  (n={stats['n']}{excluded})"
        )
    from polypseg.negatives_eval import format_lines

    lines.extend(format_lines(result))
    if not result["split"]["matches_training"]:
        lines.append("  warning: this split is not the one the model was trained with")
    return "\n".join(lines)
