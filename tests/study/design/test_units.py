"""Metrics of a trial over more units: per category weighted by seeds, objective over categories."""

from __future__ import annotations

import pytest

from dhkd.study.design.units import merge_final


def test_a_new_seed_and_a_new_category_merge_into_means():
    old = {
        "val/a/pixel_aupro": 0.6,
        "val/b/pixel_aupro": 0.8,
        "val/pixel_aupro": 0.7,
        "test/a/pixel_aupro": 0.5,
        "test/b/pixel_aupro": 0.7,
        "test/pixel_aupro": 0.6,
    }
    old_units = [("a", 0), ("b", 0)]
    new = {
        "val/a/pixel_aupro": 0.9,
        "val/c/pixel_aupro": 0.3,
        "val/pixel_aupro": 0.6,
        "test/a/pixel_aupro": 0.7,
        "test/c/pixel_aupro": 0.1,
        "test/pixel_aupro": 0.4,
    }
    new_units = [("a", 1), ("c", 0)]  # fmt: skip
    merged = merge_final(old, old_units, new, new_units, "pixel_aupro")
    assert merged["val/a/pixel_aupro"] == pytest.approx(0.75)  # seeds 0 and 1
    assert merged["val/b/pixel_aupro"] == 0.8 and merged["val/c/pixel_aupro"] == 0.3
    assert merged["val/pixel_aupro"] == pytest.approx((0.6 + 0.9 + 0.8 + 0.3) / 4)  # over units
    assert merged["objective/pixel_aupro"] == pytest.approx((0.75 + 0.8 + 0.3) / 3)
    assert merged["test/a/pixel_aupro"] == pytest.approx(0.6)
    assert merged["test/pixel_aupro"] == pytest.approx((0.5 + 0.7 + 0.7 + 0.1) / 4)
    assert "val/image_auroc" not in merged  # not measured: not invented


def test_a_category_without_a_value_leaves_that_metric_out():
    merged = merge_final({"val/a/image_auroc": 0.5}, [("a", 0)], {}, [("b", 0)], "pixel_aupro")
    assert merged == {}
