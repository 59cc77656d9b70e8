"""`dhkd suite plan`: the studies of a suite file, their units and expected compute, checked
against the suite's budget before anything runs."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "suite",
        help="plan a suite: the studies of a paper with shared data, seeds and resources",
        description="A suite is a YAML file naming several studies with shared data, seeds, "
        "selection protocol, preset, resources and budget (docs/suites.md).",
    )
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    plan = verbs.add_parser(
        "plan",
        help="trials, units and expected CPU / GPU / wall hours of each study; exit 1 over budget",
        description="Expand SUITE into its studies, count their trials and (category, seed) "
        "units (the reference once per unit), and estimate their compute from measured costs: "
        "MLflow runs of the same method and preset, then the suite's `costs:` table. Exits 1 "
        "when the estimate exceeds the suite's budget or a cost needed to check it is unknown.",
    )
    plan.add_argument("suite", help="suite file, e.g. studies/suites/local.yaml")
    plan.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store whose earlier runs give the costs (default: sqlite:///runs/mlflow.db "
        "when that file exists, else only the suite's costs table)",
    )
    plan.set_defaults(func=plan_command)


def plan_command(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from dhkd.runs.tracking import DEFAULT_TRACKING_URI
    from dhkd.suite.plan import cost_book, format_plan, plan_suite
    from dhkd.suite.spec import expand, load_suite

    suite = load_suite(args.suite)
    specs = expand(suite)
    uri = args.tracking_uri
    if uri is None and Path(DEFAULT_TRACKING_URI.removeprefix("sqlite:///")).is_file():
        uri = DEFAULT_TRACKING_URI
    plan = plan_suite(suite, specs, cost_book(suite, specs, uri))
    print(format_plan(plan))
    problems = plan.problems()
    for problem in problems:
        print(f"dhkd suite plan: {problem}", file=sys.stderr)
    return 1 if problems else 0
