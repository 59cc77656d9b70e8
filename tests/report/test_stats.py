"""Paired Wilcoxon tests and the Holm correction."""

from __future__ import annotations

import pytest

from dhkd.report.stats import MIN_PAIRS, Comparison, adjust, holm, wilcoxon_pair


def test_holm_matches_a_hand_computed_example():
    # sorted p: 0.01 (x3), 0.02 (x2), 0.04 (x1) -> 0.03, 0.04, 0.04; then back in input order
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []


def test_too_few_pairs_get_no_test_and_say_why():
    c = wilcoxon_pair("v", "base", [1, 2, 3, 4, 5], [0, 0, 0, 0, 0], "category means")
    assert c.p is None and f"at least {MIN_PAIRS}" in c.reason and "5 pairs" in c.text()
    c = wilcoxon_pair("v", "base", [1.0] * 8, [1.0] * 8, "category x seed")
    assert c.p is None and "0 with a difference" in c.reason


def test_wilcoxon_exact_p_and_signed_median():
    x = [10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0]
    y = [v - d for v, d in zip(x, [1, 2, 3, 4, 5, 6, -0.5], strict=True)]
    c = wilcoxon_pair("v", "base", x, y, "category means")
    # ranks of |d|: 0.5 -> 1 (negative), the rest 2..7 positive: W = min(27, 1) = 1
    assert c.statistic == 1 and c.p == pytest.approx(4 / 128)
    assert c.median_diff == pytest.approx(3.0)


def test_adjust_only_touches_tested_comparisons():
    tested = Comparison("a", "b", 8, "x", 1.0, 0.0, 0.01)
    untested = Comparison("c", "b", 2, "x", 1.0, None, None, reason="few")
    adjust([tested, untested, Comparison("d", "b", 8, "x", 1.0, 0.0, 0.04)])
    assert tested.p_holm == pytest.approx(0.02) and untested.p_holm is None
    assert "Holm p = 0.02" in tested.text() and "no test (few)" in untested.text()
