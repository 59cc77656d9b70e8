"""dhkd.metrics against the official MVTec AD values, hand-computed curves and scikit-learn."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from dhkd.errors import ConfigError, DataError
from dhkd.metrics import (
    METRIC_NAMES,
    evaluate_maps,
    image_ap,
    image_auroc,
    image_f1_max,
    pixel_ap,
    pixel_aupro,
    pixel_auroc,
    pixel_f1_max,
)

ORACLES = Path(__file__).resolve().parent / "oracle"  # see tests/oracle/README.md
ORACLE_CASES = ("real_masks", "multi_region_ties", "tiny_regions")


@pytest.fixture(scope="module")
def oracle() -> tuple[dict, dict]:
    """Maps, masks and the official scripts' values, vendored in tests/oracle/ (never skipped)."""
    expected = json.loads((ORACLES / "expected.json").read_text())["cases"]
    with np.load(ORACLES / "pro_cases.npz") as arrays:
        return expected, dict(arrays)


def test_oracle_files_are_the_recorded_ones():
    """The vendored oracle is byte for byte what tests/oracle/README.md records (sha256)."""
    recorded = dict(
        (name, digest)
        for digest, name in re.findall(
            r"sha256 ([0-9a-f]{64})  (\S+)", (ORACLES / "README.md").read_text()
        )
    )
    assert set(recorded) == {"expected.json", "pro_cases.npz"}
    for name, digest in recorded.items():
        assert hashlib.sha256((ORACLES / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize("case", ORACLE_CASES)
def test_matches_official_script(oracle, case):
    expected, arrays = oracle
    maps, masks = arrays[f"{case}_maps"], arrays[f"{case}_masks"]
    want = expected[case]
    got = evaluate_maps(maps, masks)
    assert got["pixel_aupro"] == pytest.approx(want["au_pro@0.3"], abs=1e-6)
    assert got["image_auroc"] == pytest.approx(want["image_auroc"], abs=1e-6)
    assert got["pixel_auroc"] == pytest.approx(want["pixel_auroc"], abs=1e-6)
    for limit in (0.05, 1.0):
        assert pixel_aupro(maps, masks, limit) == pytest.approx(want[f"au_pro@{limit}"], abs=1e-6)
    # {0, 255} masks and float64 maps give the same values.
    assert pixel_aupro(maps.astype(np.float64), masks * 255) == pytest.approx(got["pixel_aupro"])


def naive_aupro(maps: np.ndarray, masks: np.ndarray, limit: float) -> float:
    """Per-threshold loop over every distinct score: the definition, written out."""
    regions = []
    for i, mask in enumerate(masks):
        labelled, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [np.flatnonzero(labelled == k) + i * mask.size for k in range(1, count + 1)]
    thresholds = np.unique(maps)[::-1]
    above = maps.ravel()[None, :] >= thresholds[:, None]  # (thresholds, pixels)
    fpr = above[:, masks.ravel() == 0].mean(axis=1)
    pro = np.mean([above[:, region].mean(axis=1) for region in regions], axis=0)
    xs, ys = [0.0, *fpr], [0.0, *pro]
    xs, ys = [*xs, 1.0], [*ys, 1.0]
    area = 0.0
    for x0, x1, y0, y1 in zip(xs[:-1], xs[1:], ys[:-1], ys[1:], strict=True):
        if x1 > limit:
            y_at = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            return (area + 0.5 * (y0 + y_at) * (limit - x0)) / limit
        area += 0.5 * (y0 + y1) * (x1 - x0)
    return area / limit


def random_case(seed: int, levels: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(5, 12, 12) maps (quantised to `levels` values to force ties) and blob masks."""
    rng = np.random.default_rng(seed)
    masks = ndimage.gaussian_filter(rng.random((5, 12, 12)), (0, 1, 1)) > 0.6
    masks[0] = False  # one good image
    maps = rng.random((5, 12, 12)) + 0.4 * masks
    if levels is not None:
        maps = np.round(maps * levels) / levels
    return maps.astype(np.float32), masks.astype(np.uint8)


@pytest.mark.parametrize(("seed", "levels"), [(0, None), (1, 6), (2, 3), (3, 20)])
def test_aupro_equals_per_threshold_definition(seed, levels):
    maps, masks = random_case(seed, levels)
    n_normal = int((masks == 0).sum())
    on_a_point = 7 / n_normal  # a limit that is exactly an FPR of the curve
    for limit in (0.01, 0.05, 0.3, 0.77, 1.0, on_a_point):
        assert pixel_aupro(maps, masks, limit) == pytest.approx(
            naive_aupro(maps, masks, limit), abs=1e-9
        )


@pytest.mark.parametrize(("seed", "levels"), [(4, None), (5, 4), (6, 50)])
def test_pixel_and_image_metrics_equal_sklearn(seed, levels):
    maps, masks = random_case(seed, levels)
    y, s = masks.ravel(), maps.ravel()
    assert pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert pixel_ap(maps, masks) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    precision, recall, _ = precision_recall_curve(y, s)
    f1 = np.max(2 * precision * recall / np.maximum(precision + recall, 1e-300))
    assert pixel_f1_max(maps, masks) == pytest.approx(f1, abs=1e-12)
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random(40), 1)
    labels = rng.random(40) < 0.4
    assert image_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert image_ap(scores, labels) == pytest.approx(
        average_precision_score(labels, scores), abs=1e-12
    )


def one_image(region_scores: list[float], normal_scores: list[float]) -> tuple:
    """(1, 4, 5) map: a 2x2 region in the top-left corner, 16 normal pixels."""
    masks = np.zeros((1, 4, 5), np.uint8)
    masks[0, :2, :2] = 1
    maps = np.zeros((1, 4, 5), np.float32)
    maps[masks == 1] = region_scores
    maps[masks == 0] = normal_scores
    return maps, masks


def test_single_region_by_hand():
    # Curve: (0,0) (0,.5) [t=1] (.25,.5) [t=.9] (.25,1) [t=.5] (1,1) [t=0].
    maps, masks = one_image([1.0, 1.0, 0.5, 0.5], [0.9] * 4 + [0.0] * 12)
    assert pixel_aupro(maps, masks, 0.1) == pytest.approx(0.5)
    assert pixel_aupro(maps, masks, 0.3) == pytest.approx((0.25 * 0.5 + 0.05) / 0.3)
    assert pixel_aupro(maps, masks, 1.0) == pytest.approx(0.125 + 0.75)


def test_tied_scores_form_one_diagonal_step():
    # t=.9 takes two region pixels and four normal ones at once: (0,0) -> (.25,.5) diagonal.
    maps, masks = one_image([0.9, 0.9, 0.2, 0.2], [0.9] * 4 + [0.0] * 12)
    assert pixel_aupro(maps, masks, 0.1) == pytest.approx(0.5 * 0.1 * 0.2 / 0.1)
    assert pixel_aupro(maps, masks, 0.3) == pytest.approx((0.0625 + 0.05) / 0.3)
    # ROC: the tied pair (2 defective, 4 normal) counts at half weight.
    assert pixel_auroc(maps, masks) == pytest.approx((2 * (4 / 2 + 12) + 2 * 12) / (4 * 16))


def test_pro_averages_over_regions_not_pixels():
    masks = np.zeros((2, 6, 6), np.uint8)
    masks[1, 0, 0] = 1  # region of 1 pixel, found
    masks[1, 3:5, 3:5] = 1  # region of 4 pixels, missed
    maps = np.full(masks.shape, 0.5, np.float32)
    maps[1, 0, 0], maps[1, 3:5, 3:5] = 1.0, 0.0
    # PRO is 0.5 from FPR 0 to 1 (pixel-weighted overlap would give 0.2).
    assert pixel_aupro(maps, masks, 0.3) == pytest.approx(0.5)
    assert pixel_aupro(maps, masks, 1.0) == pytest.approx(0.5)


def test_regions_are_8_connected():
    masks = np.zeros((1, 6, 6), np.uint8)
    masks[0, 0, 0] = masks[0, 1, 1] = 1  # diagonal neighbours: one region of 2
    masks[0, 4, 4] = 1  # a second region
    maps = np.full(masks.shape, 0.5, np.float32)
    maps[0, 1, 1] = maps[0, 4, 4] = 0.0
    maps[0, 0, 0] = 1.0
    # 8-connectivity: PRO = (1/2 + 0) / 2 = 0.25; 4-connectivity would give 1/3.
    assert pixel_aupro(maps, masks, 0.3) == pytest.approx(0.25)


def test_perfect_and_inverted_maps():
    masks = random_case(7, None)[1]
    perfect = evaluate_maps(masks.astype(np.float32), masks)
    assert set(perfect) == set(METRIC_NAMES)
    assert all(value == pytest.approx(1.0) for value in perfect.values())
    assert pixel_aupro(masks.astype(np.float32), masks, 0.01) == pytest.approx(1.0)
    inverted = evaluate_maps(1.0 - masks.astype(np.float32), masks)
    n_def, n = int(masks.sum()), masks.size
    assert inverted["pixel_auroc"] == 0.0
    assert inverted["pixel_aupro"] == 0.0
    assert pixel_aupro(1.0 - masks.astype(np.float32), masks, 1.0) == 0.0
    assert inverted["pixel_ap"] == pytest.approx(n_def / n)
    assert inverted["pixel_f1_max"] == pytest.approx(2 * n_def / (n + n_def))
    assert inverted["image_auroc"] == 0.5  # every image has max 1: all tied


def test_image_scores_override_and_bool_masks():
    maps, masks = random_case(8, None)
    labels = masks.reshape(5, -1).any(axis=1)
    scores = np.where(labels, 2.0, 1.0)
    got = evaluate_maps(maps, masks.astype(bool), image_scores=scores)
    assert got["image_auroc"] == 1.0
    assert got["pixel_aupro"] == pytest.approx(pixel_aupro(maps, masks))
    default = evaluate_maps(maps, masks)["image_auroc"]
    assert default == pytest.approx(image_auroc(maps.max(axis=(1, 2)), labels))
    assert image_f1_max(scores, labels) == 1.0


def _bad(match: str, fn=evaluate_maps, *args, **kwargs):
    with pytest.raises(ValueError, match=match):
        fn(*args, **kwargs)


def test_bad_inputs_raise_with_the_fix():
    maps, masks = random_case(9, None)
    _bad(r"differ in shape.*resize", evaluate_maps, maps, masks[:, :-1])
    _bad(r"shape \(N, H, W\).*\[None\]", evaluate_maps, maps[0], masks[0])
    _bad(r"shape \(N, H, W\)", pixel_aupro, maps[..., None], masks[..., None])
    _bad("empty", pixel_auroc, maps[:0], masks[:0])
    for value in (np.nan, np.inf, -np.inf):
        broken = maps.copy()
        broken[0, 0, 0] = value
        _bad("NaN or inf", evaluate_maps, broken, masks)
    for value in (2, 128, 255):  # 255 among 1s: a 0/1/255 mix
        odd = masks.copy()
        odd[0, 0, 0] = value
        _bad(r"only 0/1 or only 0/255", evaluate_maps, maps, odd)
    _bad("only 0/1", pixel_aupro, maps, masks.astype(np.int16) - 1)
    _bad("only 0/1", pixel_auroc, maps, masks * 0.5)
    _bad("bool, integer or", pixel_auroc, maps, masks.astype(complex))
    _bad("real-valued", pixel_auroc, maps.astype(complex), masks)
    _bad("no defective pixel", pixel_aupro, maps, np.zeros_like(masks))
    _bad("no normal pixel", pixel_aupro, maps, np.ones_like(masks))
    all_defective = masks.copy()
    all_defective[:, 0, 0] = 1
    _bad("no normal image", evaluate_maps, maps, all_defective)
    for limit in (0.0, -0.1, 1.5, np.nan, True, "0.3"):
        _bad("fpr_limit must be a number in", pixel_aupro, maps, masks, limit)
    _bad(r"image_scores must have shape \(5,\)", evaluate_maps, maps, masks, image_scores=[1, 2])
    _bad("NaN or inf", evaluate_maps, maps, masks, image_scores=[0.0, 1, 2, 3, np.nan])
    _bad("no defective image", image_auroc, [0.1, 0.2], [0, 0])
    _bad("no normal image", image_ap, [0.1, 0.2], [1, 1])
    _bad(r"both have shape \(N,\)", image_auroc, [0.1, 0.2], [0, 1, 1])


def test_errors_are_dhkd_errors():
    maps, masks = random_case(10, None)
    with pytest.raises(DataError):
        pixel_auroc(maps, masks[:1])
    with pytest.raises(ConfigError):
        pixel_aupro(maps, masks, 2.0)


def test_benchmark_smoke(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_metrics.py"
    spec = importlib.util.spec_from_file_location("bench_metrics", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "metrics.json"
    result = bench.main(["--n", "6", "--size", "32", "--repeat", "1", "--out", str(out)])
    assert result["abs_diff"] < 1e-6
    assert json.loads(out.read_text())["n_maps"] == 6
