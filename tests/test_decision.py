"""The frame-level decision: features of a probability map, the default rule, the thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from polypseg.decision import (
    BY_TTA,
    DEFAULT_DECISION,
    choose_thresholds,
    for_tta,
    frame_features,
    polyp_present,
    rates,
    resolve,
)


def _map(height: int, width: int, blobs: list[tuple[int, int, int, int, float]]) -> np.ndarray:
    prob = np.full((height, width), 0.1, np.float32)
    for top, left, h, w, value in blobs:
        prob[top : top + h, left : left + w] = value
    return prob


def test_features_are_the_largest_region_and_the_peak() -> None:
    prob = _map(100, 100, [(0, 0, 10, 10, 0.9), (50, 50, 20, 5, 0.7)])
    area, peak = frame_features(prob)
    assert area == pytest.approx(100 / 10_000)
    assert peak == pytest.approx(0.9)
    assert frame_features(np.full((20, 30), 0.3)) == (0.0, pytest.approx(0.3))
    with pytest.raises(ValueError):
        frame_features(np.zeros((2, 2, 2)))


def test_a_large_map_is_scored_on_a_strided_view_with_the_same_answer() -> None:
    small = _map(200, 300, [(20, 30, 40, 60, 0.95)])
    large = np.kron(small, np.ones((8, 8), np.float32))  # 1600 x 2400
    area_small, _ = frame_features(small)
    area_large, peak = frame_features(large)
    assert area_large == pytest.approx(area_small, rel=0.05)
    assert peak == pytest.approx(0.95)


def test_default_rule_is_half_a_percent_of_the_image_above_one_half() -> None:
    assert DEFAULT_DECISION["min_area_fraction"] == 0.005
    assert polyp_present(_map(100, 100, [(0, 0, 8, 8, 0.8)]))  # 0.64%
    assert not polyp_present(_map(100, 100, [(0, 0, 6, 6, 0.8)]))  # 0.36%
    # many small specks do not add up to a region
    grid = range(0, 100, 10)
    specks = _map(100, 100, [(r, c, 3, 3, 0.9) for r in grid for c in grid])
    assert not polyp_present(specks)
    assert not polyp_present(np.full((10, 10), 0.49))
    assert polyp_present(np.full((10, 10), 0.5))


def test_recorded_thresholds_are_applied() -> None:
    prob = _map(100, 100, [(0, 0, 20, 20, 0.7)])  # 4%, peak 0.7
    assert polyp_present(prob, {"min_area_fraction": 0.03, "min_peak_probability": 0.6})
    assert not polyp_present(prob, {"min_area_fraction": 0.05, "min_peak_probability": 0.6})
    assert not polyp_present(prob, {"min_area_fraction": 0.03, "min_peak_probability": 0.8})


def test_chosen_thresholds_meet_the_target_specificity_and_keep_most_positives() -> None:
    rng = np.random.default_rng(0)
    # negatives: small spurious regions with middling peaks; positives: larger and surer
    negatives = [(float(a), float(p)) for a, p in
                 zip(rng.uniform(0, 0.03, 200), rng.uniform(0.5, 0.9, 200), strict=True)]
    positives = [(float(a), float(p)) for a, p in
                 zip(rng.uniform(0.01, 0.3, 100), rng.uniform(0.7, 1.0, 100), strict=True)]
    for target in (0.8, 0.95, 1.0):
        chosen = choose_thresholds(positives, negatives, target)
        got = rates(positives, negatives, chosen)
        assert got["specificity"] >= target
        assert got["specificity"] == pytest.approx(chosen["val_specificity"])
        assert got["sensitivity"] == pytest.approx(chosen["val_sensitivity"])
        assert chosen["min_area_fraction"] >= DEFAULT_DECISION["min_area_fraction"]
        # no looser pair on the grid of one notch does better within the target
        for looser in ({**chosen, "min_area_fraction": chosen["min_area_fraction"] * 0.9},
                       {**chosen, "min_peak_probability": chosen["min_peak_probability"] - 0.02}):
            other = rates(positives, negatives, looser)
            assert other["specificity"] < target or other["sensitivity"] <= got["sensitivity"]
    assert rates(positives, negatives, choose_thresholds(positives, negatives, 0.8))[
        "sensitivity"] > 0.8


def test_without_validation_negatives_the_default_rule_stays() -> None:
    chosen = choose_thresholds([(0.1, 0.9)], [], 0.95)
    assert chosen["min_area_fraction"] == DEFAULT_DECISION["min_area_fraction"]
    assert chosen["source"].startswith("default")
    with pytest.raises(ValueError):
        choose_thresholds([(0.1, 0.9)], [(0.0, 0.2)], 0.0)


def test_each_test_time_augmentation_gets_the_thresholds_chosen_for_it() -> None:
    decision = {"min_area_fraction": 0.02, "min_peak_probability": 0.9, "source": "validation",
                "target_specificity": 0.95,
                BY_TTA: {"rot90": {"min_area_fraction": 0.01, "min_peak_probability": 0.7}}}
    plain = for_tta(decision, None)
    assert plain == for_tta(decision, "none")
    assert BY_TTA not in plain and plain["min_peak_probability"] == 0.9
    rot90 = for_tta(decision, "rot90")
    assert (rot90["min_area_fraction"], rot90["min_peak_probability"]) == (0.01, 0.7)
    assert rot90["target_specificity"] == 0.95 and "rot90" in rot90["source"]
    assert BY_TTA not in rot90 and BY_TTA not in resolve(decision)
    prob = np.full((10, 10), 0.1, np.float32)
    prob[:2, :2] = 0.8  # 4% of the image, peak 0.8: present only under the rot90 thresholds
    assert polyp_present(prob, rot90) and not polyp_present(prob, plain)
    # calibrated before by_tta existed: the plain thresholds, and the source says so
    old = {k: v for k, v in decision.items() if k != BY_TTA}
    fallback = for_tta(old, "rot90")
    assert fallback["min_peak_probability"] == 0.9 and "without rot90" in fallback["source"]
    assert for_tta(None, "rot90") is None
