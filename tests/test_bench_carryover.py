"""benchmarks/bench_carryover.py: the derived categories keep images and masks aligned, a defect
cropped out of the frame drops its image, and the smallest run judges each row against kNN."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from dhkd.data.index import index_category

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load_bench():
    sys.path.insert(0, str(BENCH))
    try:
        path = BENCH / "bench_carryover.py"
        spec = importlib.util.spec_from_file_location("bench_carryover", path)
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
    finally:
        sys.path.remove(str(BENCH))
    return bench


def _square(size: int, top: int, left: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """A gray image with a bright square and the square's mask."""
    image = np.full((size, size, 3), 90, np.uint8)
    mask = np.zeros((size, size), np.uint8)
    image[top : top + side, left : left + side] = 250
    mask[top : top + side, left : left + side] = 255
    return image, mask


@pytest.mark.parametrize("variant", ["gray", "rotated", "zoomed", "shrunk"])
def test_transforms_move_mask_with_image(variant):
    bench = _load_bench()
    image, mask = _square(96, 40, 36, 16)
    out, out_mask = bench.VARIANTS[variant](image, mask, seed=7)
    assert out.shape == image.shape and out_mask.shape == mask.shape
    bright = out.mean(axis=2) > 200
    inside = out_mask > 0
    # the defect's pixels are where the bright square went (interpolation blurs the edges)
    assert (bright & inside).sum() >= 0.8 * inside.sum() > 0
    assert (bright & ~inside).sum() <= 0.25 * inside.sum()
    if variant == "gray":
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    if variant == "shrunk":
        assert inside.sum() == pytest.approx(mask.astype(bool).sum() / 4, rel=0.3)
    if variant == "zoomed":
        assert inside.sum() == pytest.approx(mask.astype(bool).sum() * 4, rel=0.3)


def test_rotation_angle_follows_the_seed_and_fills_corners_with_the_background():
    bench = _load_bench()
    image, mask = _square(64, 10, 10, 12)
    image[:2], image[-2:], image[:, :2], image[:, -2:] = 60, 60, 60, 60  # the border's colour
    first, _ = bench.rotated(image, mask, seed=1)
    again, _ = bench.rotated(image, mask, seed=1)
    other, _ = bench.rotated(image, mask, seed=2)
    assert (first == again).all() and not (first == other).all()
    corners = first[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == 60).all()  # not black: uncovered corners take the border's colour


def test_zoom_drops_a_defective_image_whose_defect_leaves_the_frame(tmp_path):
    bench = _load_bench()
    root = tmp_path / "data"
    category = root / "cat"
    good, _ = _square(64, 0, 0, 1)
    for i in range(3):
        (category / "train" / "good").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(category / "train" / "good" / f"{i}.png"), good)
    (category / "test" / "good").mkdir(parents=True)
    cv2.imwrite(str(category / "test" / "good" / "0.png"), good)
    (category / "test" / "dent").mkdir(parents=True)
    (category / "ground_truth" / "dent").mkdir(parents=True)
    for name, (top, left) in {"centre": (28, 28), "corner": (0, 0)}.items():
        image, mask = _square(64, top, left, 8)
        cv2.imwrite(str(category / "test" / "dent" / f"{name}.png"), image)
        cv2.imwrite(str(category / "ground_truth" / "dent" / f"{name}_mask.png"), mask)
    name, dropped = bench.derive(root, "cat", "zoomed", tmp_path / "derived")
    assert (name, dropped) == ("cat_zoomed", 1)
    index = index_category(tmp_path / "derived", name)
    assert len(index.train) == 3
    assert sorted(s.path.name for s in index.test) == ["0.png", "centre.png"]
    kept = next(s for s in index.test if s.label == 1)
    assert cv2.imread(str(kept.mask_path), cv2.IMREAD_GRAYSCALE).any()
    # a second call reuses the finished folder
    assert bench.derive(root, "cat", "zoomed", tmp_path / "derived") == (name, 1)


def test_verdicts_compare_each_metric_with_the_knn_minus_the_bound():
    bench = _load_bench()
    rows = [
        {"category": "a", "method": "knn", "wall_s": 10.0,
         "image_auroc": 0.9, "pixel_auroc": 0.9, "pixel_aupro": 0.8},
        {"category": "a", "method": "dhkd", "wall_s": 25.0,
         "image_auroc": 0.9, "pixel_auroc": 0.896, "pixel_aupro": 0.7949},
    ]  # fmt: skip
    (verdict,) = bench.verdicts(rows)
    assert verdict["method"] == "dhkd" and verdict["wall_ratio"] == 2.5
    assert verdict["margins"]["pixel_auroc"] == pytest.approx(0.001)
    assert verdict["margins"]["pixel_aupro"] == pytest.approx(-0.0001)
    assert not verdict["passes"]


@pytest.mark.slow
def test_carryover_benchmark_smallest(synthetic_root, tmp_path):
    bench = _load_bench()
    out = tmp_path / "carryover.json"
    argv = ["--preset", "tiny", "--data", str(synthetic_root), "--categories", "widget",
            "--variants", "gray", "--methods", "knn", "dhkd", "--work", str(tmp_path / "work"),
            "--out", str(out)]  # fmt: skip
    report = bench.main(argv)
    assert json.loads(out.read_text()) == report
    assert [(r["category"], r["method"]) for r in report["results"]] == [
        ("widget_gray", "knn"),
        ("widget_gray", "dhkd"),
    ]
    (verdict,) = report["verdicts"]
    assert verdict["category"] == "widget_gray" and set(verdict["margins"]) == set(bench.METRICS)
    assert report["meta"]["dropped_defective_images"] == {"widget_gray": 0}
