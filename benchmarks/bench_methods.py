"""DHKD, BiKD and the kNN reference side by side: what `dhkd train` with a preset costs and scores.

    .venv/bin/python benchmarks/bench_methods.py [--categories bottle cookie]
        [--methods dhkd bikd knn] [--preset quick] [--data ROOT ...] [--features cold|warm]

Each (category, method) runs `dhkd.training.fit.fit` in its own process, so that peak memory and CPU
time belong to that run alone: wall time and CPU time (user + system) of the fit, its feature /
train / evaluation seconds and the seconds of the validation passes at earlier epochs (every
optim.eval_every: the learning curve a study's scheduler reads), the process's peak resident
memory, and image AUROC, pixel AUROC and AU-PRO on the category's test images (val_*: on the
images its selection protocol validates on). --features cold (default) starts every run from
an empty feature cache, so the backbone pass is part of its time, as in a first `dhkd train`;
warm extracts the features once per category beforehand and times the methods on cached
features.
A category is looked up in the --data roots in order (default: ../shared/data/mvtec_ad and
../shared/data/lookout_cookie next to the checkout). Writes
benchmarks/results/methods_<preset>.json (or --out) with the machine's load average before and
after each run: on a shared machine the times are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOTS = [REPO / ".." / "shared" / "data" / name for name in ("mvtec_ad", "lookout_cookie")]
METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")


def find_root(category: str, roots: list[Path]) -> Path:
    for root in roots:
        if (root / category / "train").is_dir():
            return root.resolve()
    raise SystemExit(
        f"category '{category}' not found under any of {[str(r) for r in roots]}; "
        "pass the dataset root that holds it with --data"
    )


def run_one(method: str, preset: str, root: str, category: str, cache_dir: str) -> dict:
    """In the child process: one fit, timed; the row as a dict."""
    import torch

    from dhkd.config import load_config
    from dhkd.features import FeatureCache
    from dhkd.training.evaluate import TEST, VAL
    from dhkd.training.fit import fit

    cfg = load_config(preset, overrides={"method": method})
    cache = FeatureCache(cache_dir)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    result = fit(cfg, root, category, None, progress=False, feature_cache=cache)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "category": category,
        "method": method,
        "preset": preset,
        "wall_s": wall,
        "cpu_s": cpu,
        "feature_s": result.feature_seconds,
        "train_s": result.train_seconds,
        "eval_s": result.eval_seconds,
        "monitor_s": result.monitor_seconds,
        "peak_rss_mb": after.ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "selection": cfg.selection.protocol,
        **{m: result.metrics[f"{TEST}{m}"] for m in METRICS},
        **{f"val_{m}": result.metrics[f"{VAL}{m}"] for m in METRICS},
    }


def fill_cache(preset: str, methods: list[str], root: str, category: str, cache_dir: str) -> None:
    """In the child process: compute every split's features each method's config needs."""
    from dhkd.config import load_config
    from dhkd.features import FeatureCache

    cache = FeatureCache(cache_dir)
    for method in methods:
        cfg = load_config(preset, overrides={"method": method})
        for split in ("train", "test"):
            cache.get(cfg, root, category, split)


def _child(args: list[str]) -> dict:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-4000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = time.perf_counter() - start
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--categories", nargs="+", default=["bottle"])
    parser.add_argument("--methods", nargs="+", default=["dhkd", "bikd", "knn"])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--data", nargs="+", type=Path, default=DEFAULT_ROOTS)
    parser.add_argument("--features", choices=["cold", "warm"], default="cold")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/...)")
    parser.add_argument("--child", nargs=5, metavar=("KIND", "METHOD", "ROOT", "CAT", "CACHE"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args(argv)
    if args.child:
        kind, method, root, category, cache_dir = args.child
        if kind == "fill":
            fill_cache(args.preset, method.split(","), root, category, cache_dir)
            print(json.dumps({}))
        else:
            print(json.dumps(run_one(method, args.preset, root, category, cache_dir)))
        return {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="dhkd-bench-") as tmp:
        for category in args.categories:
            root = str(find_root(category, args.data))
            shared = str(Path(tmp) / f"{category}-warm")
            if args.features == "warm":
                _child(["--preset", args.preset, "--child", "fill", ",".join(args.methods),
                        root, category, shared])  # fmt: skip
            for method in args.methods:
                cache = shared if args.features == "warm" else f"{tmp}/{category}-{method}"
                load_before = os.getloadavg()[0]
                row = _child(["--preset", args.preset, "--child", "run", method, root, category,
                              cache])  # fmt: skip
                row.update(features=args.features, load_avg_1m_before=load_before,
                           load_avg_1m_after=os.getloadavg()[0])  # fmt: skip
                rows.append(row)
                print(
                    f"{category:10s} {method:5s} wall {row['wall_s']:7.1f} s (features "
                    f"{row['feature_s']:.1f}, train {row['train_s']:.1f}, eval {row['eval_s']:.1f}"
                    f", earlier validation {row['monitor_s']:.1f})"
                    f"  cpu {row['cpu_s']:7.1f} s  peak RSS {row['peak_rss_mb']:6.0f} MB  "
                    + " / ".join(f"{row[m]:.3f}" for m in METRICS)
                    + f"  (load {load_before:.1f})",
                    flush=True,
                )
    meta = {
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "metrics": list(METRICS),
        "note": "load_avg_1m_* is the machine's load; above cpu_count the times are upper bounds",
    }
    out = args.out or RESULTS / f"methods_{args.preset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"meta": meta, "results": rows}
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
