"""`dhkd train`: train and evaluate one method on one category."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dhkd.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train and evaluate on one category",
        description="Train a method on <data>/<category>/train/good, evaluate it on the "
        "validation images of the selection protocol every optim.eval_every epochs and on the "
        "test images once at the end (selection.protocol: synthetic = held-out train/good images "
        "plus synthetic defects (default), test_fold = a validation fold of the test set, test "
        "= the whole test set, optimistic). Writes OUT/metrics.json (val/... and test/... keys, "
        "'selection' names the protocol), OUT/checkpoint.pt, OUT/config.yaml and an anomaly-map "
        "grid of the test images OUT/maps_<category>_s<seed>.png. The folder is written whole "
        "once the run completes; an OUT that holds a run is refused unless --overwrite.",
    )
    p.add_argument("--data", required=True, help="dataset root in MVTec layout")
    p.add_argument("--category", required=True, help="category folder under --data")
    add_config_arguments(p)
    p.add_argument("--out", required=True, help="output directory (new, empty, or see --overwrite)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run that --out holds, whole, once the new run has completed (a run "
        "that fails leaves it as it was)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments that resolve a run's config (`config_from_args`), shared with `dhkd
    config show`."""
    from dhkd.methods.registry import DEFAULT_METHOD, method_names

    p.add_argument(
        "--method", choices=method_names(), default=None, help=f"default: {DEFAULT_METHOD}"
    )
    p.add_argument("--preset", default="quick", help="quick (default, offline), paper or tiny")
    p.add_argument("--config", help="YAML file with config sections, applied over the preset")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set optim.lr=0.002 (repeatable)",
    )
    p.add_argument("--seed", type=int, default=None, help="shortcut for --set seed=N")
    p.add_argument(
        "--selection",
        choices=("synthetic", "test_fold", "test"),
        default=None,
        help="shortcut for --set selection.protocol=P (default: synthetic)",
    )


def config_from_args(args: argparse.Namespace):
    """The TrainConfig of the arguments of `add_config_arguments`: the preset (shared and the
    method's values), then --config, then --set and its shortcuts."""
    from dhkd.config import load_config, parse_overrides

    overrides = parse_overrides(args.overrides)
    for flag, key, value in (
        ("--method", "method", args.method),
        ("--seed", "seed", args.seed),
        ("--selection", "selection.protocol", args.selection),
    ):
        if value is None:
            continue
        if key in overrides and overrides[key] != value:
            raise ConfigError(
                f"{flag} {value} contradicts --set {key}={overrides[key]}; give only one of them"
            )
        overrides[key] = value
    return load_config(args.preset, args.config, overrides)


def run(args: argparse.Namespace) -> int:
    from dhkd.data.check import require_usable
    from dhkd.runs.paths import require_run_out
    from dhkd.training.fit import fit

    cfg = config_from_args(args)
    out = Path(args.out)
    require_run_out(out, args.overwrite)  # before any work
    for warning in require_usable(Path(args.data), [args.category]):
        print(f"dhkd train: {warning}", file=sys.stderr)
    result = fit(cfg, args.data, args.category, out, progress=not args.quiet)
    m = result.metrics
    for split, name in (("val", "validation"), ("test", "test")):
        print(
            f"{args.category} {name:<10}: image AUROC {m[f'{split}/image_auroc']:.4f}  pixel "
            f"AUROC {m[f'{split}/pixel_auroc']:.4f}  AU-PRO {m[f'{split}/pixel_aupro']:.4f}"
        )
    print(
        f"{result.selection['label']} (selection.protocol={cfg.selection.protocol}); "
        f"train {result.train_seconds:.0f} s, features {result.feature_seconds:.0f} s"
    )
    print(f"wrote {out}/metrics.json, checkpoint.pt, config.yaml and anomaly-map grids")
    print(json.dumps({k: round(v, 4) for k, v in m.items()}))
    return 0
