"""Metrics of a trial over more units: per category weighted by seeds, objective over categories."""

from __future__ import annotations

import pytest

from dhkd.study.units import merge_final


def test_a_new_seed_and_a_new_category_merge_into_means():
    old = {"a/pixel_aupro": 0.6, "b/pixel_aupro": 0.8, "pixel_aupro": 0.7}
    old_units = [("a", 0), ("b", 0)]
    new = {"a/pixel_aupro": 0.9, "c/pixel_aupro": 0.3, "pixel_aupro": 0.6}
    new_units = [("a", 1), ("c", 0)]
    merged = merge_final(old, old_units, new, new_units, "pixel_aupro")
    assert merged["a/pixel_aupro"] == pytest.approx(0.75)  # seeds 0 and 1
    assert merged["b/pixel_aupro"] == 0.8 and merged["c/pixel_aupro"] == 0.3
    assert merged["pixel_aupro"] == pytest.approx((0.6 + 0.9 + 0.8 + 0.3) / 4)  # over units
    assert merged["objective"] == pytest.approx((0.75 + 0.8 + 0.3) / 3)  # over categories
    assert "image_auroc" not in merged  # not measured: not invented


def test_a_category_without_a_value_leaves_that_metric_out():
    merged = merge_final({"a/image_auroc": 0.5}, [("a", 0)], {}, [("b", 0)], "pixel_aupro")
    assert merged == {}
