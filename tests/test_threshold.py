"""The good/defective threshold: F1-max, target-FPR and good-sigma modes, their edge cases, and
the measures of a threshold on labelled scores."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from dhkd.errors import DataError
from dhkd.metrics import image_f1_max
from dhkd.sections import ThresholdConfig
from dhkd.threshold import Threshold, choose_threshold, decisions, measures, rates


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
    t = choose_threshold(scores, labels, ThresholdConfig(mode="f1_max"), "test")
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
    with pytest.raises(DataError, match="needs good and defective"):
        choose_threshold(np.array([0.0, 1.0]), np.array([0, 0]), ThresholdConfig(), "v")
    with pytest.raises(DataError, match="needs defective"):
        choose_threshold(
            np.array([0.0, 1.0]), np.array([0, 0]), ThresholdConfig(mode="f1_max"), "v"
        )
    with pytest.raises(DataError, match="needs good"):
        choose_threshold(np.array([0.0, 1.0]), np.array([1, 1]), ThresholdConfig(mode="fpr"), "v")
    with pytest.raises(DataError, match="NaN"):
        choose_threshold(np.array([np.nan, 1.0]), np.array([0, 1]), ThresholdConfig(), "v")


def test_round_trip_keeps_sigmas_and_weights_older_than_it_still_load():
    cfg = ThresholdConfig(mode="good_sigma", sigmas=1.0)
    t = choose_threshold(np.array([0.0, 1.0, 5.0]), np.array([0, 0, 1]), cfg, "validation")
    assert Threshold.from_dict(t.to_dict()) == t and t.sigmas == 1.0
    older = {"value": 0.5, "mode": "f1_max", "target_fpr": None, "source": "validation",
             "f1": 1.0, "fpr": 0.0, "recall": 1.0}  # fmt: skip
    assert Threshold.from_dict(older) == Threshold(0.5, "f1_max", None, "validation", 1, 0, 1)
    assert Threshold.from_dict(older).sigmas is None


# good: 0.1 0.3 0.6 0.8; defective: 0.2 0.5 0.7 0.9
HAND_SCORES = np.array([0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9])
HAND_LABELS = np.array([0, 1, 0, 1, 0, 1, 0, 1])


def test_measures_on_a_hand_computed_example():
    m = measures(HAND_SCORES, HAND_LABELS, 0.55)  # called defective: 0.6 0.7 0.8 0.9
    half = {"precision": 0.5, "recall": 0.5, "fpr": 0.5, "ba": 0.5}
    assert m == pytest.approx({**half, "best_ba": 0.625, "ba_ratio": 0.8})  # best: e.g. at 0.5
    at_best = measures(HAND_SCORES, HAND_LABELS, 0.5)  # >= : 0.5 itself is called defective
    assert (at_best["recall"], at_best["fpr"], at_best["ba_ratio"]) == (0.75, 0.5, 1.0)
    assert at_best["precision"] == pytest.approx(3 / 5)
    silent = measures(HAND_SCORES, HAND_LABELS, 0.95)  # nothing called defective
    none = {"precision": 0.0, "recall": 0.0, "fpr": 0.0, "ba": 0.5}
    assert silent == pytest.approx({**none, "best_ba": 0.625, "ba_ratio": 0.8})


def test_best_ba_is_the_best_over_every_threshold():
    rng = np.random.default_rng(3)
    for _ in range(20):
        labels = rng.integers(0, 2, 30)
        labels[:2] = [0, 1]
        scores = np.round(rng.normal(labels * rng.uniform(0, 2), 1.0), 1)  # ties
        cuts = np.arange(scores.min() - 0.05, scores.max() + 0.1, 0.1)  # between the scores
        brute = max(measures(scores, labels, c)["ba"] for c in cuts)
        m = measures(scores, labels, float(np.median(scores)))
        assert m["best_ba"] == pytest.approx(brute)
        assert m["ba_ratio"] == pytest.approx(m["ba"] / brute) and m["ba_ratio"] <= 1.0
    reversed_ = measures(np.array([0.8, 0.9, 0.1, 0.2]), np.array([0, 0, 1, 1]), 0.85)
    assert reversed_["best_ba"] == 0.5 and reversed_["ba"] == 0.25  # no cut beats calling all good


def test_measures_need_both_classes():
    with pytest.raises(DataError, match="need good and defective"):
        measures(np.array([0.1, 0.2]), np.array([0, 0]), 0.15)
    with pytest.raises(DataError, match="need good and defective"):
        measures(np.array([0.1, 0.2]), np.array([1, 1]), 0.15)


def test_good_sigma_is_mean_plus_k_sample_deviations_of_the_good_scores():
    scores = np.array([1.0, 2.0, 3.0, 4.0, 10.0, 4.5])
    labels = np.array([0, 0, 0, 0, 1, 1])
    cfg = ThresholdConfig(mode="good_sigma", sigmas=2.0)
    t = choose_threshold(scores, labels, cfg, "validation")
    assert t.value == pytest.approx(2.5 + 2.0 * np.sqrt(5.0 / 3.0))  # std with ddof 1
    assert (t.mode, t.sigmas, t.target_fpr) == ("good_sigma", 2.0, None)
    assert (t.fpr, t.recall) == (0.0, 0.5)  # 4.5 is below 5.08, 10 above
    zero = choose_threshold(scores, labels, ThresholdConfig(mode="good_sigma", sigmas=0), "v")
    assert zero.value == pytest.approx(2.5) and zero.fpr == 0.5
    assert ThresholdConfig().sigmas == 3.0 and ThresholdConfig().mode == "between"
    others = [ThresholdConfig(), ThresholdConfig(mode="fpr")]
    assert all(choose_threshold(scores, labels, c, "v").sigmas is None for c in others)


def test_good_sigma_needs_two_good_images_and_a_finite_non_negative_k():
    cfg = ThresholdConfig(mode="good_sigma")
    with pytest.raises(DataError, match=r"at least 2 good images.*found 1.*mode=fpr or f1_max"):
        choose_threshold(np.array([0.1, 0.9, 0.8]), np.array([0, 1, 1]), cfg, "v")
    for bad in (-0.5, float("inf")):
        with pytest.raises(ValidationError, match="sigmas"):
            ThresholdConfig(mode="good_sigma", sigmas=bad)


def test_between_lies_a_fraction_of_the_way_from_the_good_mean_to_the_f1_max_threshold():
    scores = np.array([1.0, 2.0, 3.0, 4.0, 10.0, 6.0, 20.0])
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    f1_max = choose_threshold(scores, labels, ThresholdConfig(mode="f1_max"), "v").value
    assert f1_max == 6.0  # all three defective images above, no good one
    t = choose_threshold(scores, labels, ThresholdConfig(mode="between", fraction=0.5), "v")
    assert t.value == pytest.approx(2.5 + 0.5 * (6.0 - 2.5))  # 4.25
    assert (t.mode, t.fraction, t.sigmas, t.target_fpr) == ("between", 0.5, None, None)
    assert (t.fpr, t.recall) == (0.0, 1.0)
    ends = [ThresholdConfig(mode="between", fraction=f) for f in (0.0, 1.0)]
    assert [choose_threshold(scores, labels, c, "v").value for c in ends] == [2.5, 6.0]
    assert choose_threshold(scores, labels, ThresholdConfig(mode="fpr"), "v").fraction is None
    default = choose_threshold(scores, labels, ThresholdConfig(), "v")  # the default rule
    assert (default.mode, default.fraction) == ("between", 0.4)
    with pytest.raises(DataError, match=r"between needs good and defective.*0 defective.*fpr"):
        choose_threshold(np.array([0.1, 0.2]), np.array([0, 0]), ends[0], "v")
    with pytest.raises(ValidationError, match="fraction"):
        ThresholdConfig(mode="between", fraction=1.5)
