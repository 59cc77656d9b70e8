"""benchmarks/bench_methods.py on the synthetic dataset with the tiny preset: one row per
(category, method) with times, memory and the three metrics, written to JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest


def _load_bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_methods.py"
    spec = importlib.util.spec_from_file_location("bench_methods", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.slow
def test_methods_benchmark_side_by_side(synthetic_root, tmp_path):
    bench = _load_bench()
    out = tmp_path / "methods.json"
    argv = ["--preset", "tiny", "--data", str(synthetic_root), "--categories", "stripes",
            "--methods", "knn", "dhkd", "--features", "warm", "--out", str(out)]  # fmt: skip
    report = bench.main(argv)
    assert json.loads(out.read_text()) == report
    rows = report["results"]
    assert [(r["category"], r["method"]) for r in rows] == [("stripes", "knn"), ("stripes", "dhkd")]
    for row in rows:
        assert row["wall_s"] > 0 and row["cpu_s"] > 0 and row["peak_rss_mb"] > 0
        assert row["process_wall_s"] >= row["wall_s"]
        assert all(0 <= row[m] <= 1 for m in ("image_auroc", "pixel_auroc", "pixel_aupro"))
        assert 0 <= row["val_pixel_aupro"] <= 1 and row["selection"] == "synthetic"


def test_unknown_category_names_the_roots_searched(tmp_path):
    bench = _load_bench()
    with pytest.raises(SystemExit, match="not found under"):
        bench.main(["--data", str(tmp_path), "--categories", "nothere"])
