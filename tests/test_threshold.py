"""The good/defective threshold: F1-max and target-FPR modes, their edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from dhkd.errors import DataError
from dhkd.metrics import image_f1_max
from dhkd.sections import ThresholdConfig
from dhkd.threshold import Threshold, choose_threshold, decisions, rates


def test_f1_max_picks_the_best_cut_and_reaches_the_metric():
    scores = np.array([0.1, 0.2, 0.35, 0.4, 0.3, 0.8, 0.9, 0.36])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    t = choose_threshold(scores, labels, ThresholdConfig(mode="f1_max"), "validation")
    assert t.f1 == pytest.approx(image_f1_max(scores, labels))
    assert t.value == pytest.approx(0.3)  # all four caught, two false alarms: F1 0.8
    assert rates(scores, labels, t.value)["f1"] == t.f1
    assert t.source == "validation" and t.mode == "f1_max" and t.target_fpr is None


def test_f1_max_separable_scores_give_f1_one_at_the_lowest_defective():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    labels = np.array([0, 0, 0, 1, 1])
    t = choose_threshold(scores, labels, ThresholdConfig(), "test")
    assert (t.value, t.f1, t.fpr, t.recall) == (pytest.approx(0.7), 1.0, 0.0, 1.0)
    assert decisions(scores, t.value).tolist() == labels.tolist()


@pytest.mark.parametrize("target", [0.05, 0.1, 0.25, 0.5])
def test_fpr_mode_keeps_false_positives_at_or_below_the_target(target):
    rng = np.random.default_rng(0)
    good = rng.normal(0, 1, 200)
    bad = rng.normal(2, 1, 50)
    scores, labels = np.concatenate([good, bad]), np.r_[np.zeros(200), np.ones(50)]
    t = choose_threshold(scores, labels, ThresholdConfig(mode="fpr", target_fpr=target), "v")
    assert t.fpr <= target and t.fpr > target - 1 / 200  # as close as 200 images allow
    assert t.target_fpr == target and 0 < t.recall <= 1


def test_fpr_mode_with_ties_and_tiny_targets():
    scores = np.array([1.0, 1.0, 1.0, 1.0, 2.0])
    labels = np.array([0, 0, 0, 0, 1])
    tied = choose_threshold(scores, labels, ThresholdConfig(mode="fpr", target_fpr=0.5), "v")
    assert tied.fpr == 0.0 and tied.value > 1.0  # all four tie: none of them may pass
    none_allowed = choose_threshold(
        np.array([0.1, 0.5, 0.9]),
        np.array([0, 0, 1]),
        ThresholdConfig(mode="fpr", target_fpr=0.01),
        "v",
    )
    assert none_allowed.value > 0.5 and none_allowed.fpr == 0.0 and none_allowed.recall == 1.0


def test_round_trip_and_bad_input():
    t = choose_threshold(np.array([0.0, 1.0]), np.array([0, 1]), ThresholdConfig(), "test")
    assert Threshold.from_dict(t.to_dict()) == t
    with pytest.raises(DataError, match="needs defective"):
        choose_threshold(np.array([0.0, 1.0]), np.array([0, 0]), ThresholdConfig(), "v")
    with pytest.raises(DataError, match="needs good"):
        choose_threshold(np.array([0.0, 1.0]), np.array([1, 1]), ThresholdConfig(mode="fpr"), "v")
    with pytest.raises(DataError, match="NaN"):
        choose_threshold(np.array([np.nan, 1.0]), np.array([0, 1]), ThresholdConfig(), "v")
