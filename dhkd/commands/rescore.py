"""`dhkd rescore`: trained runs scored again under other fusion / smoothing / pooling settings
and threshold rules."""

from __future__ import annotations

import argparse

# the metrics of dhkd.training.evaluate, spelled out to keep the command line's start light
METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")
LOO_METRICS = (*METRICS, "threshold_ba_ratio")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rescore",
        help="score trained runs again under other score.* settings, without retraining",
        description="For each run (a `dhkd train` output folder, or the MLflow run id of a "
        "study trial that kept its weights), compute the level maps of its "
        "validation and test images once and score them under every combination of the "
        "--grid values (score.fusion, score.smoothing_sigma, score.pooling, "
        "score.topk_fraction, score.pool) and threshold rules (threshold.mode, "
        "threshold.fraction, threshold.sigmas, threshold.target_fpr: the threshold chosen on "
        "the validation image scores and how it decides on the test images), beside the run's "
        "own setting. Prints, per setting, "
        "the mean validation and test metrics over the runs and how many runs each raised or "
        "lowered; choose on the validation columns. The own setting must reproduce the logged "
        "metrics: a warning says when it does not. Default grid: smoothing_sigma "
        "0,2,4,6,8 x pooling max,mean,topk x topk_fraction 0.01,0.03,0.05,0.1. With "
        "--leave-one-out METRIC over runs of 3 or more categories, also shows per held-out "
        "category the setting chosen on the other categories' test METRIC and its numbers on "
        "the held-out one, and their mean: how a default carries over to an untuned category "
        "(threshold_ba_ratio: how a threshold rule does).",
    )
    p.add_argument(
        "runs",
        nargs="+",
        metavar="DIR|RUN_ID",
        help="output folders of `dhkd train` or MLflow run ids of study trials",
    )
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (sqlite:///runs/mlflow.db)")
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="score.KEY=V1,V2",
        help="values to scan for one score.* or threshold.* key (repeatable; replaces the "
        "default grid)",
    )
    p.add_argument("--data", default=None, help="dataset root, if it moved since the runs")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--out", default=None, help="also write every number to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no per-run progress lines")
    p.add_argument(
        "--leave-one-out",
        choices=LOO_METRICS,
        default=None,
        metavar="METRIC",
        help="leave-one-category-out choice on this test metric ("
        + ", ".join(LOO_METRICS)
        + "); needs runs over 3 or more categories",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from dhkd.report.loo import leave_one_out
    from dhkd.runs.paths import require_not_input, require_writable_file
    from dhkd.runs.rescore import (
        DEFAULT_GRID,
        category_values,
        format_leave_one_out,
        format_scan,
        grid_settings,
        has_thresholds,
        known_categories,
        parse_grid,
        require_loo_categories,
        scan_run,
        scan_to_json,
        summarise,
    )

    if args.out:
        require_writable_file(args.out, "--out")
        require_not_input(args.out, args.runs, "--out")
    settings = grid_settings(parse_grid(args.grid) if args.grid else DEFAULT_GRID)
    if args.leave_one_out:
        categories = known_categories(args.runs)
        if categories is not None:
            require_loo_categories(categories)
    scans = []
    for folder in args.runs:
        scans += scan_run(
            folder,
            settings,
            args.data,
            args.device,
            progress=not args.quiet,
            tracking_uri=args.tracking_uri,
        )
    summary = summarise(scans)
    thresholds = has_thresholds(settings)
    print(format_scan(scans, summary, thresholds))
    data = scan_to_json(scans, summary, thresholds)
    if args.leave_one_out:
        require_loo_categories(list(dict.fromkeys(s.category for s in scans)))
        loo = leave_one_out(category_values(scans), args.leave_one_out)
        print()
        print(format_leave_one_out(loo), end="")
        data["leave_one_out"] = loo.to_json()
    if args.out:
        out = Path(args.out).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=1))
        print(f"wrote {out}")
    return 0
