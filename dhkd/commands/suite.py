"""`dhkd suite plan|run`: the studies of a suite file, their units and expected compute, checked
against the suite's budget before anything runs; then every study run in order."""

from __future__ import annotations

import argparse

from dhkd.commands.study import add_run_options


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
    plan.add_argument(
        "--storage-path",
        default=None,
        help="Ray storage folder whose suites/SUITE-calibration.json holds earlier "
        "--calibrate measurements, and receives new ones (runs/ray)",
    )
    _calibrate_option(plan)
    plan.set_defaults(func=plan_command)

    run = verbs.add_parser(
        "run",
        help="plan, then run every study of SUITE in order (complete ones skipped, interrupted "
        "ones resumed)",
        description="Plan SUITE as `suite plan` does and refuse (exit 1) when the plan has "
        "problems, unless --force; then run its studies in order as `dhkd study run` would, "
        "with the same options: a complete study is skipped, an interrupted one resumes from "
        "the storage path. The reference is measured once per (category, seed) and reference "
        "configuration over the suite. Writes STORAGE/suites/NAME.json with the plan's "
        "estimate and the actual wall time.",
    )
    run.add_argument("suite", help="suite file, e.g. studies/suites/local.yaml")
    run.add_argument(
        "--force", action="store_true", help="run even over budget or with costs unknown"
    )
    _calibrate_option(run)
    add_run_options(run)
    _document_options(run)
    run.add_argument(
        "--no-document",
        action="store_true",
        help="do not write the suite document when every study is complete",
    )
    run.set_defaults(func=run_command)

    report = verbs.add_parser(
        "report",
        help="one document for the suite: main table, ablation tables, figures, LaTeX + PDF",
        description="Read the suite's studies back from MLflow and write one document: the "
        "main table (DHKD, BiKD, the kNN reference, published columns), an ablation table per "
        "question with paired tests against the default row, the sensitivity and qualitative "
        "figures, main.tex compiled to main.pdf, README.md / README.html and provenance.csv "
        "naming the MLflow run of every number (docs/suites.md).",
    )
    report.add_argument("suite", help="suite file, e.g. studies/suites/local.yaml")
    report.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store the suite ran against (sqlite:///runs/mlflow.db)",
    )
    report.add_argument("--storage-path", default=None,
                        help="the suite's Ray storage folder, for its plan-vs-actual summary "
                        "(runs/ray)")  # fmt: skip
    _document_options(report)
    report.set_defaults(func=report_command)


def _calibrate_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="for every method and preset the plan has no cost for, train one (category, seed) "
        "unit here first, as a trial would (on a GPU when trials ask for one), and store its "
        "cost in STORAGE/suites/SUITE-calibration.json for this and later plans",
    )


def _document_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", default=None, help="folder of the suite document (default: reports/<suite name>)"
    )
    parser.add_argument(
        "--latex-layout",
        choices=("twocolumn", "onecolumn"),
        default="twocolumn",
        help="main.tex's layout (default twocolumn)",
    )
    parser.add_argument("--no-pdf", action="store_true", help="write main.tex, do not compile it")


def _plan(path: str, uri: str | None, verb: str, storage: str | None = None,
          calibrate: bool = False):  # fmt: skip
    """(specs, plan, problems) of the suite file, the plan printed and its problems too; with
    calibrate, the costs the plan lacks measured first (dhkd.suite.calibrate)."""
    import sys

    from dhkd.study.driver.runner import DEFAULT_STORAGE
    from dhkd.suite.calibrate import CalibrationRefused, calibrate_missing, calibration_path
    from dhkd.suite.plan import cost_book, format_plan, plan_suite
    from dhkd.suite.run import done_work
    from dhkd.suite.spec import expand, load_suite

    suite = load_suite(path)
    specs = expand(suite)
    storage = storage or str(DEFAULT_STORAGE)
    calibration = calibration_path(storage, suite.name)
    book = cost_book(suite, specs, uri, calibration)
    done = done_work(specs, storage)
    plan = plan_suite(suite, specs, book, done)
    refused = []
    if calibrate and plan.missing:
        try:
            calibrate_missing(suite, specs, plan.missing, storage, book.train_size, verb=verb)
        except CalibrationRefused as exc:
            refused.append(str(exc))
        else:
            book = cost_book(suite, specs, uri, calibration)
            plan = plan_suite(suite, specs, book, done)
    print(format_plan(plan))
    problems = [*refused, *plan.problems()]
    for problem in problems:
        print(f"dhkd suite {verb}: {problem}", file=sys.stderr)
    return specs, plan, problems


def _existing_store(uri: str | None) -> str | None:
    """uri, or the default store; None for a sqlite file that does not exist (yet)."""
    from pathlib import Path

    from dhkd.runs.tracking import DEFAULT_TRACKING_URI

    uri = uri or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None
    return uri


def plan_command(args: argparse.Namespace) -> int:
    uri = args.tracking_uri or _existing_store(None)
    _, _, problems = _plan(args.suite, uri, "plan", args.storage_path, args.calibrate)
    return 1 if problems else 0


def run_command(args: argparse.Namespace) -> int:
    import sys

    from dhkd.commands.study import run_options
    from dhkd.suite.run import format_outcome, run_suite, summary_path

    specs, plan, problems = _plan(args.suite, _existing_store(args.tracking_uri), "run",
                                  args.storage_path, args.calibrate)  # fmt: skip
    if problems and not args.force:
        print("dhkd suite run: nothing was run; fix the plan, or run it anyway with --force",
              file=sys.stderr)  # fmt: skip
        return 1
    opts = run_options(args)
    outcomes = run_suite(plan, specs, opts)
    print(format_outcome(plan, outcomes, summary_path(opts.storage_path, plan.suite.name)))
    failed = [o for o in outcomes if o.failed]
    done = all(o.complete for o in outcomes) and not failed
    if done and not args.no_document:
        _document(args, specs, opts.tracking_uri, opts.storage_path)
    if failed:
        names = ", ".join(f"{o.name} ({o.failed})" for o in failed)
        print(f"dhkd suite run: FAILED trials in {names} (their errors: the `error` tag of their "
              f"MLflow runs); once the cause is fixed, run them again with: dhkd suite run "
              f"{args.suite} --retry-failed")  # fmt: skip
    return 0 if done else 1


def _document(args: argparse.Namespace, specs, uri: str, storage: str | None) -> None:
    import shlex

    from dhkd.suite.document import build_document
    from dhkd.suite.spec import load_suite

    suite = load_suite(args.suite)
    out = args.out or f"reports/{suite.name}"
    command = ["dhkd", "suite", "report", args.suite, "--out", out]
    if args.latex_layout != "twocolumn":
        command += ["--latex-layout", args.latex_layout]
    doc = build_document(suite, specs, uri, out, storage_path=storage, layout=args.latex_layout,
                         pdf=not args.no_pdf, command=shlex.join(command))  # fmt: skip
    latex = doc.latex
    state = ""
    if latex:
        problems = [*latex.get("errors", []), *latex.get("overfull", [])]
        state = (
            "; main.pdf compiled"
            if latex.get("compiled") and not problems
            else ("; LaTeX: " + "; ".join(problems))
        )
    print(f"[dhkd] suite document: {out}/README.md ({len(doc.main)} main tables, "
          f"{len(doc.ablations)} ablation tables, {len(doc.figures)} figures{state})")  # fmt: skip


def report_command(args: argparse.Namespace) -> int:
    from dhkd.runs.tracking import DEFAULT_TRACKING_URI
    from dhkd.suite.spec import expand, load_suite

    specs = expand(load_suite(args.suite))
    storage = args.storage_path or "runs/ray"
    _document(args, specs, args.tracking_uri or DEFAULT_TRACKING_URI, storage)
    return 0
