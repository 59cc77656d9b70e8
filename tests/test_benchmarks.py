"""Every benchmark script runs at its smallest setting and writes its JSON (to a temp folder):
a benchmark that crashes (bench_train --method bikd once did) fails here, not on a GPU night."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dhkd.methods.registry import method_names

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_every_benchmark_is_tested():
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_bench*.py"))
    missing = [p.name for p in (ROOT / "benchmarks").glob("bench_*.py") if p.name not in tests]
    assert not missing, f"{missing}: run each at its smallest setting in tests/test_bench*.py"


def test_bench_metrics_smallest(tmp_path):
    _run("bench_metrics.py", "--n", "6", "--size", "32", "--repeat", "1",
         "--out", str(tmp_path / "m.json"))  # fmt: skip
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["abs_diff"] <= 1e-6 and 0.0 <= result["pixel_aupro"] <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("method", method_names())
def test_bench_train_smallest(tmp_path, method):
    out = tmp_path / f"train_{method}.json"
    _run("bench_train.py", "--presets", "tiny", "--method", method, "--images", "4",
         "--device", "cpu", "--out", str(out))  # fmt: skip
    (row,) = json.loads(out.read_text())["results"]
    assert row["method"] == method and row["train_images_per_s"] > 0
    assert row["inference_images_per_s"] > 0


@pytest.mark.slow
def test_bench_study_smallest(tmp_path):
    out = tmp_path / "study.json"
    done = _run("bench_study.py", "--smoke-test", "--no-study-without-cache",
                "--no-cache-bench", "--out", str(out))  # fmt: skip
    study = json.loads(out.read_text())["study"]
    assert study["trials"] == 2 and study["startup_s"] > 0
    assert len(study["per_trial_overhead_s"]) == 2
    assert study["per_trial_overhead_later_median_s"] is None  # both start the first wave
    assert {"tracking_check", "data", "ray_init", "first_trial"} <= set(
        study["startup_breakdown_s"]
    )
    assert "per-trial overhead" in done.stdout


def test_trial_overheads_split_the_first_wave_from_reused_slots():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_study", ROOT / "benchmarks/bench_study.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    records = [  # two slots: #0 and #1 start the first wave, #2 takes #0's slot 0.5 s after
        {"started": 0.0, "ended": 10.0, "compute_s": 8.5},
        {"started": 0.2, "ended": 12.0, "compute_s": 11.0},
        {"started": 10.5, "ended": 15.0, "compute_s": 4.0},
    ]
    got = bench.trial_overheads(records, slots=2)
    assert [first for _, first in got] == [True, True, False]
    assert [round(o, 6) for o, _ in got] == [1.5, 0.8, 1.0]
