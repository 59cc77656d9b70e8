"""`dhkd report STUDY`: tables, figures and provenance of a study, read from MLflow."""

from __future__ import annotations

import argparse
import shlex
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="per-category tables and figures of a study, every number traced to its run",
        description="Read study STUDY from MLflow and write Markdown / LaTeX / CSV tables (image "
        "AUROC, pixel AUROC, AU-PRO per category), figures, and provenance.csv naming the run "
        "and metric behind every number; the report is also logged to the study run under "
        "report/.",
    )
    p.add_argument("study", help="study name (the MLflow experiment), e.g. quickstart")
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (sqlite:///runs/mlflow.db)")
    p.add_argument("--out", default=None, help="output folder (reports/STUDY)")
    p.add_argument(
        "--paper",
        action="store_true",
        help="add published reference columns (DHKD paper's tables, bidirectional-KD means)",
    )
    p.add_argument(
        "--storage-path",
        default=None,
        help="Ray storage folder of the study (runs/ray): read its optuna.db for importances "
        "and history instead of rebuilding the Optuna study from MLflow",
    )
    p.add_argument(
        "--baseline",
        default=None,
        help="column the paired tests compare against, a value (0.0) or key (noise.sigma=0.0); "
        "default: the spec's first value",
    )
    p.add_argument(
        "--latex-layout",
        choices=("twocolumn", "onecolumn", "compact"),
        default="twocolumn",
        help="LaTeX tables for a two-column paper (table, or table* when a table needs the "
        "full width; the default), a one-column paper, or compact (footnotesize, tight columns, "
        "one column of a two-column paper); every layout scales a table down to the line width",
    )
    p.add_argument("--no-log", action="store_true", help="do not log the report to MLflow")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dhkd.report import build_report
    from dhkd.report.tables import SUMMARY_ROWS
    from dhkd.runs.paths import require_not_input, require_writable_dir
    from dhkd.runs.tracking import DEFAULT_TRACKING_URI

    out = Path(args.out) if args.out else Path("reports") / args.study
    uri = args.tracking_uri or DEFAULT_TRACKING_URI
    study_files = [args.storage_path] if args.storage_path else []  # what the report reads
    if uri.startswith("sqlite:///"):
        study_files.append(Path(uri.removeprefix("sqlite:///")))
    require_writable_dir(out, "--out")
    require_not_input(out, study_files, "--out")
    if args.storage_path and not Path(args.storage_path).is_dir():
        print(
            f"warning: --storage-path {args.storage_path} is not a folder: the report rebuilds "
            "the Optuna study from MLflow; pass the study run's --storage-path to read its "
            "optuna.db",
            file=sys.stderr,
        )
    parts = ["dhkd", "report", args.study]
    for flag, value in (
        ("--tracking-uri", args.tracking_uri),
        ("--out", args.out),
        ("--storage-path", args.storage_path),
        ("--baseline", args.baseline),
    ):
        if value:
            parts += [flag, value]
    if args.latex_layout != "twocolumn":
        parts += ["--latex-layout", args.latex_layout]
    parts += ["--paper"] * args.paper + ["--no-log"] * args.no_log
    result = build_report(
        args.study,
        uri,
        out,
        paper=args.paper,
        storage_path=args.storage_path,
        baseline=args.baseline,
        log_artifacts=not args.no_log,
        command=shlex.join(parts),
        latex_layout=args.latex_layout,
    )
    for metric, table in result.tables.items():
        state = f"PARTIAL ({len(table.missing)} cells missing)" if table.partial else "complete"
        n_rows = len([r for r in table.rows if r not in SUMMARY_ROWS])
        print(f"{metric}: {n_rows} categories x {len(table.columns)} columns, {state}")
    print(
        f"wrote {out}/README.md, tables/ (md, tex, csv, notes, preamble.tex), "
        f"{len(result.figures)} figure files, provenance.csv"
    )
    if result.logged_to:
        print(f"logged to MLflow run {result.logged_to} under report/")
    return 0
