"""Paired bootstrap intervals and the convergence rule, on numbers with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from polypseg.bench.stats import BETTER, UNDECIDED, WORSE, convergence, paired_bootstrap


def _runs(matrix: np.ndarray) -> list[dict[str, float]]:
    return [{f"img{i:03d}": float(v) for i, v in enumerate(row)} for row in matrix]


def test_a_constant_shift_is_found_with_a_tight_interval() -> None:
    """Every seed scores the same images alike (no seed spread): the interval collapses."""
    rng = np.random.default_rng(1)
    base = np.repeat(rng.uniform(0.3, 0.9, size=(1, 60)), 3, axis=0)
    result = paired_bootstrap(_runs(base + 0.05), _runs(base), n_boot=2000)
    assert result["diff_mean"] == pytest.approx(0.05, abs=1e-12)
    assert result["ci_low"] == pytest.approx(0.05, abs=1e-9)
    assert result["ci_high"] == pytest.approx(0.05, abs=1e-9)
    assert result["verdict"] == BETTER
    flipped = paired_bootstrap(_runs(base), _runs(base + 0.05), n_boot=2000)
    assert flipped["verdict"] == WORSE and flipped["diff_mean"] == pytest.approx(-0.05)


def test_one_seed_each_is_the_paired_image_bootstrap() -> None:
    """With one run a side only images are resampled: the interval is close to the normal
    approximation mean +- 1.96 sd / sqrt(n) of the paired differences."""
    rng = np.random.default_rng(2)
    base = rng.uniform(0.2, 0.9, size=(1, 400))
    entry = np.clip(base + rng.normal(0.02, 0.1, size=base.shape), 0, 1)
    result = paired_bootstrap(_runs(entry), _runs(base), n_boot=20_000)
    diff = (entry - base)[0]
    half = 1.96 * diff.std(ddof=1) / math.sqrt(diff.size)
    assert result["ci_low"] == pytest.approx(diff.mean() - half, abs=0.15 * half)
    assert result["ci_high"] == pytest.approx(diff.mean() + half, abs=0.15 * half)
    assert result["n_images"] == 400 and result["n_seeds"] == [1, 1]


def test_seed_spread_widens_the_interval() -> None:
    """Seeds that disagree (one good, one bad run) make the interval wider than the image
    bootstrap of the same mean difference alone, and undecided here."""
    rng = np.random.default_rng(3)
    base = rng.uniform(0.3, 0.9, size=(3, 80))
    entry = base + np.array([[0.15], [-0.12], [0.0]])
    seeds = paired_bootstrap(_runs(entry), _runs(base), n_boot=4000)
    pooled = paired_bootstrap(_runs(entry.mean(axis=0, keepdims=True)),
                              _runs(base.mean(axis=0, keepdims=True)), n_boot=4000)
    assert seeds["diff_mean"] == pytest.approx(pooled["diff_mean"])
    assert seeds["ci_high"] - seeds["ci_low"] > 5 * (pooled["ci_high"] - pooled["ci_low"])
    assert seeds["verdict"] == UNDECIDED


def test_only_shared_images_are_compared_and_bad_input_is_refused() -> None:
    entry = [{"a": 0.9, "b": 0.8, "c": 0.1}]
    base = [{"a": 0.5, "b": 0.4}]
    assert paired_bootstrap(entry, base, n_boot=500)["n_images"] == 2
    with pytest.raises(ValueError, match="share no"):
        paired_bootstrap([{"x": 1.0}], [{"y": 1.0}])
    with pytest.raises(ValueError, match="finite"):
        paired_bootstrap([{"x": math.nan}], [{"x": 1.0}])
    with pytest.raises(ValueError, match="at least one run"):
        paired_bootstrap([], base)


def _rows(values: list[float]) -> list[dict[str, float]]:
    return [{"epoch": float(i + 1), "val_dice": v} for i, v in enumerate(values)]


def test_convergence_rule() -> None:
    stopped = convergence(_rows([0.5, 0.7, 0.8] + [0.79] * 8), patience=8, epochs=40)
    assert stopped["stopped_early"] and stopped["levelled_off"]
    assert stopped["best_epoch"] == 3 and stopped["epochs"] == 11
    flat = convergence(_rows([0.5 + 0.01 * i for i in range(30)] + [0.792] * 2 + [0.795] * 8),
                       patience=8, epochs=40)
    assert not flat["stopped_early"] and flat["levelled_off"]
    assert flat["late_gain"] == pytest.approx(0.003, abs=1e-9)
    climbing = convergence(_rows([0.3 + 0.01 * i for i in range(40)]), patience=8, epochs=40)
    assert not climbing["levelled_off"] and climbing["late_gain"] == pytest.approx(0.08)
    assert convergence([], patience=8, epochs=40)["levelled_off"] is False
    assert not (stopped["stalled"] or flat["stalled"] or climbing["stalled"])
    # stuck at the all-foreground score, then stopped by patience: a failed start
    stuck = convergence(_rows([0.146] * 9), patience=8, epochs=40)
    assert stuck["stopped_early"] and stuck["stalled"] and not stuck["levelled_off"]
    # a slow start that takes off (val Dice 0 for five epochs) is not stalled
    late = convergence(_rows([0.0] * 5 + [0.5, 0.7, 0.8] + [0.79] * 8), patience=8, epochs=40)
    assert late["levelled_off"] and not late["stalled"]


def test_convergence_paragraph_names_stalled_runs() -> None:
    from polypseg.bench.report import convergence_markdown

    def run(seed: int, values: list[float]) -> dict:
        return {"entry": "p4m", "trained_as": "p4m", "dataset": "cvc", "seed": seed,
                "convergence": convergence(_rows(values), patience=8, epochs=40)}

    doc = {"settings": {"train_options": {"patience": 8}},
           "results": [run(0, [0.5, 0.7, 0.8] + [0.79] * 8), run(2, [0.146] * 9)]}
    text = "\n".join(convergence_markdown(doc))
    assert "1 of 2 runs levelled off: 1 stopped early" in text and ", 0 reached" in text
    assert "Stalled" in text and "cvc/p4m/seed2 (best validation Dice 0.146 at epoch 1" in text
    assert "at least" not in text
    doc["settings"]["train_options"]["min_epochs"] = 16
    assert "(no better validation Dice for 8 epochs, and at least 16 epochs trained)" in "\n".join(
        convergence_markdown(doc))


def test_pareto_front() -> None:
    from polypseg.bench.pareto import pareto_front

    points = [(1.0, 0.70), (2.0, 0.80), (3.0, 0.75), (0.5, 0.60), (2.0, 0.78), (4.0, 0.85)]
    assert pareto_front(points) == [3, 0, 1, 5]
    assert pareto_front([(1.0, 0.5), (1.0, 0.5)]) == [0, 1]  # ties dominate neither


def test_labels_of_points_that_coincide_stack_and_the_others_stay() -> None:
    from polypseg.bench.pareto import label_offsets

    # unet+rotaug and unet+tta: the same cost and mean Dice; p4 far away
    offsets = label_offsets([0.0098, 0.0098, 0.0099, 0.023], [0.755, 0.755, 0.746, 0.800])
    assert offsets[0] == (6, 5) and offsets[3] == (6, 5)
    assert offsets[1] == (6, -6)  # one line below the first
    assert offsets[2] == (6, 5)  # 0.009 Dice lower of a 0.054 span: not near
    three = label_offsets([1.0, 1.0, 1.0, 100.0], [0.5, 0.5, 0.5, 0.9])
    assert len({o for o in three[:3]}) == 3  # three coinciding labels, three lines


def test_bootstrap_mean_brackets_the_mean_and_narrows_with_more_images() -> None:
    import numpy as np

    from polypseg.bench.stats import bootstrap_mean

    rng = np.random.default_rng(1)

    def runs(n_images: int) -> list[dict[str, float]]:
        base = rng.uniform(0.4, 0.9, n_images)
        return [{f"i{k}": float(v + rng.normal(0, 0.02)) for k, v in enumerate(base)}
                for _ in range(3)]

    small, large = bootstrap_mean(runs(10), n_boot=2000), bootstrap_mean(runs(400), n_boot=2000)
    for result in (small, large):
        assert result["ci_low"] < result["mean"] < result["ci_high"]
        assert result["n_seeds"] == 3
    assert (large["ci_high"] - large["ci_low"]) < (small["ci_high"] - small["ci_low"]) / 3
    constant = bootstrap_mean([{"a": 0.5, "b": 0.5}] * 2, n_boot=200)
    assert abs(constant["ci_low"] - 0.5) < 1e-12 and abs(constant["ci_high"] - 0.5) < 1e-12
