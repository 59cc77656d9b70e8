"""`dhkd data check ROOT [--category C]`: count images and report problems of a dataset."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="inspect datasets in MVTec layout",
        description="Inspect datasets in MVTec AD layout (<root>/<category>/train/good, ...).",
    )
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    check = sub.add_parser(
        "check",
        help="count images per category, split and defect type; report every problem",
        description="Open every image and mask under ROOT and report counts and problems. "
        "Exits 0 when there is no error (warnings allowed), 2 otherwise.",
    )
    check.add_argument("root", metavar="ROOT", help="dataset root holding <category>/ folders")
    check.add_argument("--category", "-c", default=None, help="check only this category")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    from dhkd.data.check import check_dataset, format_report

    report = check_dataset(args.root, category=args.category)
    print(format_report(report))
    if not report.ok:
        print(
            f"dhkd data check: {len(report.errors)} error(s) in {report.root}; fix them and "
            "run the check again",
            file=sys.stderr,
        )
        return 2
    return 0
