"""Study throughput, platform overhead and the feature-cache speed-up, at quickstart scale.

    .venv/bin/python benchmarks/bench_study.py [--spec studies/quickstart.yaml] [--smoke-test]
        [--no-study-without-cache] [--no-cache-bench] [--out FILE]

1. The study as `dhkd study run` runs it (fresh storage and a fresh MLflow sqlite store, local
   Ray): wall time, trials per hour, and the share of wall time the trial slots spend outside
   trial compute: 1 - sum(trial compute) / (wall * slots), slots = trials that can run at once.
   Trial compute is what each trial measures inside its trainable (features, training,
   evaluation, outputs: the wall seconds its attempts reported, from live.json). "loop"
   excludes the start-up by timing from the first trial's start to the last end. Start-up
   (run_study called -> first trial started) comes with its breakdown (the runner's phases:
   tracking check, lock and spec, data, Optuna, outbox, Ray start, study run, then Tune until
   the first trial starts); the per-trial overhead is each trial's time outside its compute
   (driver start to end, less compute, plus the wait since its slot freed), with its median.
2. The same study with the feature cache off (every trial extracts its backbone features).
3. One trial's fit_units with no cache, with a warm disk cache (a new process would see this)
   and with a warm memory cache (a reused Ray actor sees this).
Writes benchmarks/results/study.json (or --out) and prints the figures; the JSON records the load
average before and after, since the development machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from dhkd.study import load_spec, smoke_spec
from dhkd.study.driver.runner import RunOptions, resolve_data, run_study
from dhkd.study.state.layout import StudyPaths
from dhkd.study.state.live import read_live, trial_cost

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def trial_overheads(records: list[dict], slots: int) -> list[tuple[float, bool]]:
    """(seconds, first wave) per trial in start order: the time it spent outside its own
    compute, from the driver's start of the trial to its end, less the compute its attempts
    measured, plus the wait since its slot freed. Trials of the first wave wait for nothing
    (that is start-up) but each starts a new Ray actor; later ones reuse a freed one."""
    free: list[float] = []
    out = []
    for rec in sorted(records, key=lambda r: r["started"]):
        gap = 0.0
        first_wave = len(free) < slots
        if not first_wave:
            free.sort()
            gap = max(0.0, rec["started"] - free.pop(0))
        free.append(rec["ended"])
        out.append((rec["ended"] - rec["started"] - rec["compute_s"] + gap, first_wave))
    return out


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def bench_study(spec, cache: str, slots: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-study-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        opts = RunOptions(storage_path=Path(tmp) / "ray", tracking_uri=uri, feature_cache=cache,
                          num_cpus=os.cpu_count(), quiet=True)  # fmt: skip
        start = time.time()
        summary = run_study(spec, opts)
        wall = time.time() - start
        live = read_live(StudyPaths(Path(tmp) / "ray", spec.name))["trials"].values()
    trials = [
        {"started": r["started"], "ended": r["ended"],
         "compute_s": trial_cost(r, spec.resources.gpu)["wall_s"]}
        for r in live if r.get("started") and r.get("ended")
    ]  # fmt: skip
    compute = sum(t["compute_s"] for t in trials)
    first = min(t["started"] for t in trials)
    loop = max(t["ended"] for t in trials) - first
    waves = trial_overheads(trials, slots)
    overheads = [o for o, _ in waves]
    startup = {k: v for k, v in summary.startup.items() if not k.endswith("_at")}
    startup["first_trial"] = round(first - summary.startup["tune_start_at"], 3)
    return {
        "feature_cache": cache,
        "trials": len(trials),
        "states": summary.counts(),
        "wall_s": round(wall, 2),
        "startup_s": round(first - start, 2),
        "startup_breakdown_s": startup,
        "loop_s": round(loop, 2),
        "trial_compute_s": round(compute, 2),
        "per_trial_overhead_s": [round(o, 2) for o in overheads],
        "per_trial_overhead_median_s": _median(overheads),
        "per_trial_overhead_first_wave_median_s": _median([o for o, first in waves if first]),
        "per_trial_overhead_later_median_s": _median([o for o, first in waves if not first]),
        "trials_per_hour": round(len(trials) / wall * 3600, 1),
        "trials_per_hour_loop": round(len(trials) / loop * 3600, 1),
        "outside_compute_fraction": round(1 - compute / (wall * slots), 3),
        "outside_compute_fraction_loop": round(1 - compute / (loop * slots), 3),
    }


def bench_cache(spec) -> dict:
    """One trial's fit_units: features computed / loaded from disk / held in memory."""
    import torch

    from dhkd.features import FeatureCache
    from dhkd.training.fit import fit_units

    torch.set_num_threads(max(1, int(spec.resources.cpu)))
    cfg = spec.base_config()
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        root = resolve_data(spec, StudyPaths(Path(tmp), spec.name))
        disk = FeatureCache(Path(tmp) / "features")
        fit_units(cfg, root, spec.units, feature_cache=disk, progress=False)  # fills the cache
        for label, cache in (
            ("none", FeatureCache("", max_memory_items=0)),
            ("disk", FeatureCache(Path(tmp) / "features")),
            ("memory", disk),
        ):
            start = time.perf_counter()
            result = fit_units(cfg, root, spec.units, feature_cache=cache, progress=False)
            out[label] = {
                "trial_s": round(time.perf_counter() - start, 2),
                "feature_s": round(result.feature_seconds, 2),
            }
    out["trial_speedup_disk"] = round(out["none"]["trial_s"] / out["disk"]["trial_s"], 2)
    out["trial_speedup_memory"] = round(out["none"]["trial_s"] / out["memory"]["trial_s"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "studies" / "quickstart.yaml"))
    parser.add_argument("--smoke-test", action="store_true", help="the spec's smoke version")
    parser.add_argument("--no-study-without-cache", action="store_true")
    parser.add_argument("--no-cache-bench", action="store_true", help="skip part 3")
    parser.add_argument("--out", default=str(RESULTS / "study.json"), help="JSON file to write")
    args = parser.parse_args()
    spec = load_spec(args.spec)
    if args.smoke_test:
        spec = smoke_spec(spec)
    cpus = os.cpu_count() or 1
    slots = max(1, min(spec.budget.max_concurrent, int(cpus // spec.resources.cpu)))
    result = {
        "spec": args.spec,
        "smoke_test": args.smoke_test,
        "cpus": cpus,
        "slots": slots,
        "load_average_before": os.getloadavg(),
        "platform": platform.platform(),
        "study": bench_study(spec, "auto", slots),
    }
    if not args.no_study_without_cache:
        result["study_without_cache"] = bench_study(spec, "off", slots)
        result["study_speedup_from_cache"] = round(
            result["study_without_cache"]["trial_compute_s"] / result["study"]["trial_compute_s"], 2
        )
    if not args.no_cache_bench:
        result["one_trial_fit"] = bench_cache(spec)
    result["load_average_after"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    study = result["study"]
    print(f"study {spec.name}: {study['trials']} trials {study['states']} in {study['wall_s']} s "
          f"(start-up {study['startup_s']} s) -> {study['trials_per_hour']} trials/h "
          f"({study['trials_per_hour_loop']} trials/h after start-up)")  # fmt: skip
    print(f"start-up: {study['startup_breakdown_s']}")
    print(f"per-trial overhead outside compute: median {study['per_trial_overhead_median_s']} s "
          f"({study['per_trial_overhead_s']}); first wave (new actors) "
          f"{study['per_trial_overhead_first_wave_median_s']} s, later trials (freed slots) "
          f"{study['per_trial_overhead_later_median_s']} s")  # fmt: skip
    print(f"outside trial compute: {study['outside_compute_fraction']:.1%} of slot time "
          f"({study['outside_compute_fraction_loop']:.1%} after start-up)")  # fmt: skip
    if "study_without_cache" in result:
        nc = result["study_without_cache"]
        print(f"without the feature cache: trial compute {nc['trial_compute_s']} s vs "
              f"{study['trial_compute_s']} s (x{result['study_speedup_from_cache']}), "
              f"wall {nc['wall_s']} s vs {study['wall_s']} s")  # fmt: skip
    fit = result.get("one_trial_fit")
    if fit:
        none, disk, memory = fit["none"], fit["disk"], fit["memory"]
        print(f"one trial: no cache {none['trial_s']} s (features {none['feature_s']} s), disk "
              f"cache {disk['trial_s']} s (x{fit['trial_speedup_disk']}), memory "
              f"{memory['trial_s']} s (x{fit['trial_speedup_memory']})")  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
