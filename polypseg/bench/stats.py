"""Statistics of a quality benchmark: paired bootstrap confidence intervals and convergence.

**Paired per-image differences.** Two entries evaluated on the same test split score every
test image; entry A is compared with baseline B by the difference of their mean per-image
Dice. Its uncertainty has two sources: which test images were drawn, and which training seeds
(initialisation, data order, augmentation). :func:`paired_bootstrap` resamples both, the
hierarchical bootstrap: in each of ``n_boot`` replicates the images are drawn with replacement
(the same draw for A and B: the comparison stays paired), and A's and B's seeds are drawn with
replacement independently (their runs are independent trainings); the replicate's statistic is
``mean over drawn images of (mean over A's drawn seeds - mean over B's drawn seeds)``. The
95 % interval is the 2.5 and 97.5 percentiles of the replicates (percentile bootstrap).
An interval above zero says "better", below zero "worse", and one that holds zero
"no difference shown" (not "no difference").

**Convergence.** A run levelled off when early stopping ended it (no better validation Dice
for ``patience`` epochs), or when it reached the epoch cap and gained less than ``tolerance``
validation Dice over its last ``patience`` epochs; :func:`convergence` reads that from the
run's ``metrics.csv``. A run whose validation Dice never rose ``tolerance`` above its first
epoch's *stalled*: a failed start (say, stuck predicting every pixel as polyp), not a converged
model, whatever stopped it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: Verdicts of a comparison, by where its confidence interval lies.
BETTER, WORSE, UNDECIDED = "better", "worse", "no difference shown"


def _matrix(runs: Sequence[Mapping[str, float]], stems: list[str]) -> np.ndarray:
    return np.array([[float(run[s]) for s in stems] for run in runs], dtype=np.float64)


def paired_bootstrap(
    entry_runs: Sequence[Mapping[str, float]],
    baseline_runs: Sequence[Mapping[str, float]],
    *,
    n_boot: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Difference of mean per-image scores, entry minus baseline, with a bootstrap interval.

    ``entry_runs`` and ``baseline_runs`` hold one mapping ``image stem -> score`` per seed.
    Images scored by every run of both sides are compared; NaN scores are not allowed (Dice
    is always defined). Returns ``diff_mean``, ``ci_low``, ``ci_high``, ``level``,
    ``verdict``, ``n_images``, ``n_seeds`` (entry's, baseline's) and ``n_boot``.

    Args:
        entry_runs: one mapping ``image stem -> score`` per seed of the entry.
        baseline_runs: the same for the baseline.
        n_boot: bootstrap replicates.
        level: the interval's coverage (0.95: the 2.5 and 97.5 percentiles).
        seed: seed of the resampling.
    """
    if not entry_runs or not baseline_runs:
        raise ValueError("both sides need at least one run")
    return paired_contrast([(1.0, entry_runs), (-1.0, baseline_runs)], n_boot=n_boot,
                           level=level, seed=seed)


def paired_contrast(
    sides: Sequence[tuple[float, Sequence[Mapping[str, float]]]],
    *,
    n_boot: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """A weighted sum of mean per-image scores over the same images, with the hierarchical
    bootstrap interval of :func:`paired_bootstrap` (which is the contrast ``+1, -1``).

    ``sides`` holds ``(weight, runs)`` pairs, ``runs`` one mapping ``image stem -> score`` per
    seed. The statistic is ``sum_k weight_k * mean(side k)`` over the images every run of
    every side scored. In each replicate the images are drawn once for all sides (paired) and
    each side's seeds independently (independent trainings). With four sides ``(+1, A), (-1,
    B), (-1, A'), (+1, B')`` it is a difference in differences: how much A's gain over B
    changes between two settings (two resolutions), paired over the same test images. Returns
    the keys of :func:`paired_bootstrap`, ``n_seeds`` listing every side's seeds.

    Args:
        sides: ``(weight, runs)`` per side; at least one side, each with at least one run.
        n_boot: bootstrap replicates.
        level: the interval's coverage (0.95: the 2.5 and 97.5 percentiles).
        seed: seed of the resampling.
    """
    if not sides or any(not runs for _, runs in sides):
        raise ValueError("every side needs at least one run")
    common = set(sides[0][1][0])
    for _, runs in sides:
        for run in runs:
            common &= set(run)
    stems = sorted(common)
    if not stems:
        raise ValueError("the sides share no scored image")
    matrices = [_matrix(runs, stems) for _, runs in sides]
    if not all(np.isfinite(m).all() for m in matrices):
        raise ValueError("scores must be finite")
    rng = np.random.default_rng(seed)
    n_images = len(stems)
    images = rng.integers(0, n_images, size=(n_boot, n_images))

    def seed_means(scores: np.ndarray) -> np.ndarray:
        """Per replicate and image, the mean over a with-replacement draw of the seeds."""
        n = scores.shape[0]
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)  # (n_boot, n)
        return counts @ scores / n  # (n_boot, n_images)

    per_image = sum(weight * seed_means(m) for (weight, _), m in zip(sides, matrices, strict=True))
    replicates = np.take_along_axis(per_image, images, axis=1).mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail])
    verdict = BETTER if low > 0 else WORSE if high < 0 else UNDECIDED
    return {
        "diff_mean": float(sum(w * m.mean() for (w, _), m in zip(sides, matrices, strict=True))),
        "ci_low": float(low),
        "ci_high": float(high),
        "level": level,
        "verdict": verdict,
        "n_images": n_images,
        "n_seeds": [int(m.shape[0]) for m in matrices],
        "n_boot": n_boot,
    }


def bootstrap_mean(
    runs: Sequence[Mapping[str, float]],
    *,
    n_boot: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """The mean per-image score of one entry, with the hierarchical bootstrap interval of
    :func:`paired_bootstrap` on one side: images and seeds drawn with replacement.

    ``runs`` holds one mapping ``image stem -> score`` per seed; images scored by every run
    count. Returns ``mean``, ``ci_low``, ``ci_high``, ``level``, ``n_images``, ``n_seeds`` and
    ``n_boot``.

    Args:
        runs: one mapping ``image stem -> score`` per seed.
        n_boot: bootstrap replicates.
        level: the interval's coverage.
        seed: seed of the resampling.
    """
    if not runs:
        raise ValueError("need at least one run")
    common = set(runs[0])
    for run in runs:
        common &= set(run)
    stems = sorted(common)
    if not stems:
        raise ValueError("the runs share no scored image")
    scores = _matrix(runs, stems)
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    rng = np.random.default_rng(seed)
    n_seeds, n_images = scores.shape
    counts = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot)
    per_image = counts @ scores / n_seeds  # (n_boot, n_images): drawn seeds' mean per image
    images = rng.integers(0, n_images, size=(n_boot, n_images))
    replicates = np.take_along_axis(per_image, images, axis=1).mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail])
    return {"mean": float(scores.mean()), "ci_low": float(low), "ci_high": float(high),
            "level": level, "n_images": n_images, "n_seeds": int(n_seeds), "n_boot": n_boot}


def convergence(
    rows: Sequence[Mapping[str, float]], *, patience: int, epochs: int, tolerance: float = 0.01
) -> dict[str, Any]:
    """Whether a run's validation Dice levelled off (see the module docstring).

    ``rows`` are its ``metrics.csv`` rows (``epoch``, ``val_dice``); ``patience`` and
    ``epochs`` are the schedule's. Returns ``epochs`` (trained), ``best_epoch``,
    ``best_val_dice``, ``stopped_early``, ``late_gain`` (best validation Dice minus the best
    as of ``patience`` epochs before the end), ``stalled`` and ``levelled_off`` (never true
    for a stalled run).

    Args:
        rows: the run's ``metrics.csv`` rows (``epoch``, ``val_dice``).
        patience: the schedule's early-stopping patience, in epochs (also the window of the late
            gain, at least one epoch).
        epochs: the schedule's number of epochs.
        tolerance: the least gain of validation Dice that counts: a best less than this above
            the first epoch's is ``stalled``, a late gain below it has levelled off.
    """
    if not rows:
        return {"epochs": 0, "levelled_off": False}
    dice = [float(r["val_dice"]) for r in rows]
    best = max(dice)
    best_epoch = int(rows[dice.index(best)]["epoch"])
    trained = int(rows[-1]["epoch"])
    window = max(1, patience)
    earlier = max(dice[:-window]) if len(dice) > window else -math.inf
    late_gain = best - earlier if math.isfinite(earlier) else None
    stopped_early = patience > 0 and trained < epochs and trained - best_epoch >= patience
    stalled = best - dice[0] < tolerance
    levelled = not stalled and (stopped_early or (late_gain is not None and late_gain < tolerance))
    return {
        "epochs": trained,
        "best_epoch": best_epoch,
        "best_val_dice": best,
        "stopped_early": stopped_early,
        "late_gain": late_gain,
        "stalled": bool(stalled),
        "levelled_off": bool(levelled),
    }
