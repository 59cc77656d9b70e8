"""Time dhkd.metrics.pixel_aupro against a plain implementation of the official MVTec algorithm.

The reference below follows the official MVTec AD evaluation script step by step: per image,
label the ground-truth regions (8-connectivity) and write per-pixel FPR / PRO increments; argsort
all scores in descending order; cumulative sums (FPR as float32, as the script does); keep the
last point of every run of equal scores; add (0, 0) and (1, 1); trapezoid rule up to the limit
with linear interpolation there; divide by the limit.

Usage: .venv/bin/python benchmarks/bench_metrics.py [--n 500 --size 256 --seed 0 --repeat 3]
Writes benchmarks/results/metrics.json.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dhkd.metrics import evaluate_maps, pixel_aupro, pixel_auroc  # noqa: E402


def make_data(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size) float32 maps and uint8 {0, 1} masks: 40 % good images, the rest with 1-3
    elliptic defects of 3-40 px radius; maps are smooth noise plus a blurred bump on defects."""
    rng = np.random.default_rng(seed)
    maps = np.empty((n, size, size), np.float32)
    masks = np.zeros((n, size, size), np.uint8)
    low = max(size // 8, 4)
    for i in range(n):
        noise = rng.normal(0.0, 1.0, (low, low)).astype(np.float32)
        base = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
        if rng.random() > 0.4:
            for _ in range(rng.integers(1, 4)):
                centre = tuple(int(c) for c in rng.integers(0, size, 2))
                axes = tuple(int(a) for a in rng.integers(3, max(size // 6, 4), 2))
                angle = float(rng.uniform(0, 180))
                cv2.ellipse(masks[i], centre, axes, angle, 0, 360, 1, thickness=-1)
            bump = cv2.GaussianBlur(masks[i].astype(np.float32), (0, 0), 4.0)
            base += float(rng.uniform(0.5, 4.0)) * bump
        maps[i] = base + rng.normal(0.0, 0.05, (size, size)).astype(np.float32)
    return maps, masks


def _pro_curve_reference(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    structure = np.ones((3, 3), dtype=int)
    fp_changes = np.zeros(maps.shape, np.uint32)
    pro_changes = np.zeros(maps.shape, np.float64)
    n_ok = n_regions = 0
    for i, gt in enumerate(masks):
        labeled, n_components = ndimage.label(gt, structure)
        n_regions += n_components
        ok = labeled == 0
        n_ok += int(ok.sum())
        fp_changes[i][ok] = 1
        for k in range(n_components):
            region = labeled == k + 1
            pro_changes[i][region] = 1.0 / region.sum()
    order = np.argsort(maps.ravel())[::-1]
    scores = maps.ravel()[order]
    fprs = np.cumsum(fp_changes.ravel()[order]).astype(np.float32) / np.float32(n_ok)
    pros = np.cumsum(pro_changes.ravel()[order]) / n_regions
    del order
    keep = np.append(np.diff(scores) != 0, True)
    fprs = np.minimum(fprs[keep], 1.0)
    pros = np.minimum(pros[keep], 1.0)
    return np.concatenate(([0.0], fprs, [1.0])), np.concatenate(([0.0], pros, [1.0]))


def _trapezoid_reference(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    correction = 0.0
    if x_max not in x:
        ins = bisect.bisect(x, x_max)
        y_at = y[ins - 1] + (y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1])
        correction = 0.5 * (y_at + y[ins - 1]) * (x_max - x[ins - 1])
    keep = x <= x_max
    x, y = x[keep], y[keep]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction)


def reference_aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    """AU-PRO as the official MVTec AD script computes it (see the module docstring)."""
    fprs, pros = _pro_curve_reference(maps, masks)
    return _trapezoid_reference(fprs, pros, fpr_limit) / fpr_limit


def best_time(fn, repeat: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return min(times), value


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="number of maps")
    parser.add_argument("--size", type=int, default=256, help="map side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fpr-limit", type=float, default=0.3)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the fast code; best kept")
    parser.add_argument("--sklearn", action="store_true", help="also time sklearn roc_auc_score")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "metrics.json"
    )
    args = parser.parse_args(argv)

    maps, masks = make_data(args.n, args.size, args.seed)
    print(
        f"{args.n} maps of {args.size}x{args.size} = {maps.size / 1e6:.1f} M pixels, "
        f"{masks.mean():.2%} defective, {int(masks.any(axis=(1, 2)).sum())} defective images"
    )
    lim = args.fpr_limit
    t_ref, ref = best_time(lambda: reference_aupro(maps, masks, lim), 1)
    t_fast, fast = best_time(lambda: pixel_aupro(maps, masks, lim), args.repeat)
    t_roc, roc = best_time(lambda: pixel_auroc(maps, masks), args.repeat)
    t_all, _ = best_time(lambda: evaluate_maps(maps, masks, lim), args.repeat)
    result = {
        "n_maps": args.n,
        "size": args.size,
        "seed": args.seed,
        "fpr_limit": lim,
        "reference_aupro": ref,
        "pixel_aupro": fast,
        "abs_diff": abs(ref - fast),
        "reference_s": t_ref,
        "pixel_aupro_s": t_fast,
        "speedup": t_ref / t_fast,
        "pixel_auroc": roc,
        "pixel_auroc_s": t_roc,
        "evaluate_maps_s": t_all,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
        "numpy": np.__version__,
    }
    if args.sklearn:
        from sklearn.metrics import roc_auc_score

        t_sk, sk = best_time(lambda: roc_auc_score(masks.ravel(), maps.ravel()), 1)
        result.update(sklearn_auroc=sk, sklearn_auroc_s=t_sk, auroc_abs_diff=abs(sk - roc))
    for key, value in result.items():
        print(f"{key:>18}: {value:.10g}" if isinstance(value, float) else f"{key:>18}: {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if abs(ref - fast) > 1e-6:
        raise SystemExit(f"MISMATCH: reference {ref} vs fast {fast}")
    return result


if __name__ == "__main__":
    main()
