"""`dhkd reproduce`: train a logged run again and compare its numbers."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="retrain a logged run and compare its metrics with the logged ones",
        description="Rebuild the exact config and data selection of RUN (an MLflow run id of a "
        "study trial, or a `dhkd train` output folder), train it again, and print logged vs "
        "reproduced metrics side by side. When they differ it says which fingerprint "
        "changed: data, code, device, library versions or threads. Exit 0 when every "
        "metric agrees within 1e-6, 1 when not.",
    )
    p.add_argument("run", metavar="RUN_ID|DIR", help="MLflow run id or a train output folder")
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (sqlite:///runs/mlflow.db)")
    p.add_argument("--data", default=None, help="dataset root, if it moved since the run")
    p.add_argument(
        "--out", default=None, help="write the reproduced run's outputs here (a new folder)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import tempfile

    from dhkd.runs.load import load_run
    from dhkd.runs.paths import require_not_input, require_run_out
    from dhkd.runs.reproduce import format_reproduction, reproduce
    from dhkd.runs.tracking import DEFAULT_TRACKING_URI

    if args.out:  # before retraining
        require_not_input(args.out, [args.run], "--out")
        require_run_out(args.out, overwrite=None)
    with tempfile.TemporaryDirectory(prefix="dhkd-reproduce-") as tmp:
        logged = load_run(args.run, args.tracking_uri or DEFAULT_TRACKING_URI, tmp)
    rep = reproduce(logged, data_root=args.data, out_dir=args.out, progress=not args.quiet)
    print(format_reproduction(rep))
    return 0 if rep.agrees else 1
