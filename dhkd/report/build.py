"""`build_report`: one study in MLflow -> tables, figures, provenance and an index README.

Output folder:
    README.md                 the report: summary, the three tables, figures, notes
    README.html               the same, self-contained (figures embedded, linked text files
                              inside): what MLflow's artifact viewer shows (html.py)
    tables/<metric>.md|.tex|.csv
    tables/<metric>_notes.md|.tex   the long notes of each table (tests, missing cells, sources)
    tables/leave_one_out.md|.tex|.csv   leave-one-category-out selection (loo_study.py), with
                              3+ categories and 2+ columns
    tables/threshold.md|.csv  the stored threshold on the test images (threshold_table.py),
                              where the runs logged it
    tables/preamble.tex       the packages the .tex tables need
    figures/*.png|.pdf        parameter plots, bars, importances, history, parallel
                              coordinates, qualitative maps (+ qualitative/ raw grids)
    provenance.csv|.json      for every number in the CSVs: run id + metric key, or source
    report.json               what was read (URI, experiment, study run, Optuna source)
The same folder is logged to the study run as artifacts under report/.
"""

from __future__ import annotations

import csv
import datetime
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from dhkd.report import figures as F
from dhkd.report import figures_optuna as FO
from dhkd.report.agreement import agreement_json
from dhkd.report.collect import (
    METRICS,
    StudyData,
    download_maps,
    kept_weights,
    load_study,
)
from dhkd.report.latex import (
    DEFAULT_LAYOUT,
    LAYOUTS,
    PREAMBLE,
    notes_latex,
    notes_markdown,
    to_latex,
)
from dhkd.report.loo_study import StudyLoo, study_leave_one_out, write_leave_one_out
from dhkd.report.optuna_study import optuna_study, space
from dhkd.report.paths import portable_text
from dhkd.report.render import FINGERPRINT_FIELDS, provenance_rows, to_csv, to_markdown
from dhkd.report.select import Column, best_trial, columns
from dhkd.report.tables import Table, build_table
from dhkd.report.threshold_table import StudyThreshold, study_threshold, write_threshold
from dhkd.runs.tracking import client_for

OUTPUTS = (
    "tables",
    "figures",
    "README.md",
    "README.html",
    "provenance.csv",
    "provenance.json",
    "report.json",
)


@dataclass
class ReportResult:
    out: Path
    tables: dict[str, Table]
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    logged_to: str | None = None  # study run id the report was logged to
    loo: StudyLoo | None = None  # the leave-one-category-out section, where there is one
    threshold: StudyThreshold | None = None  # the stored threshold's test numbers, where logged


def resolve_baseline(cols: list[Column], baseline: str | None) -> str | None:
    """A column key from a key ("noise.sigma=0.0") or a value ("0.0"); None: the first."""
    if baseline is None:
        return None
    for col in cols:
        if baseline == col.key or any(
            baseline == (v if isinstance(v, str) else json.dumps(v))
            for v in col.assignment.values()
        ):
            return col.key
    from dhkd.errors import DhkdError

    raise DhkdError(
        f"--baseline {baseline!r} matches no column; columns: " + ", ".join(c.key for c in cols)
    )


def write_tables(
    tables: dict[str, Table],
    out: Path,
    layout: str = DEFAULT_LAYOUT,
    loo: StudyLoo | None = None,
    threshold: StudyThreshold | None = None,
) -> None:
    folder = out / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "preamble.tex").write_text(PREAMBLE)
    rows = []
    for metric, table in tables.items():
        (folder / f"{metric}.md").write_text(to_markdown(table))
        (folder / f"{metric}.tex").write_text(to_latex(table, layout))
        (folder / f"{metric}_notes.md").write_text(notes_markdown(table, metric))
        (folder / f"{metric}_notes.tex").write_text(notes_latex(table))
        (folder / f"{metric}.csv").write_text(to_csv(table))
        rows += provenance_rows(table)
    if loo is not None:
        write_leave_one_out(loo, folder, layout)
        rows += loo.provenance
    if threshold is not None:
        write_threshold(threshold, folder)
        rows += threshold.provenance
    fields = [
        "table",
        "row",
        "column",
        "label",
        "quantity",
        "value",
        "source",
        "run_id",
        "trial_number",
        "metric_key",
        "mlflow_value",
        "reference",
        *FINGERPRINT_FIELDS,
    ]
    with open(out / "provenance.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (out / "provenance.json").write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")


def _figure(result: ReportResult, folder: Path, name: str, make) -> None:
    """Draw and save one figure; an Optuna figure that cannot be drawn becomes a note."""
    try:
        fig = make()
    except ValueError as exc:
        result.notes.append(f"figure {name} skipped: {exc}")
        return
    result.figures += F.save(fig, folder, name, dpi=100 if name == "qualitative" else F.DPI)


def write_figures(data: StudyData, cols: list[Column], result: ReportResult, storage) -> None:
    folder = result.out / "figures"
    tables = result.tables
    for key in data.spec.get("scientific") or {}:
        make = lambda k=key: F.parameter_figure(data, tables, cols, k)  # noqa: E731
        _figure(result, folder, f"param_{key}", make)
    for metric, table in tables.items():
        _figure(result, folder, f"bars_{metric}", lambda t=table: F.bars_figure(data, t))
    study, source, notes = optuna_study(data, storage)
    result.notes += notes
    result.notes.append(
        f"Importances, history and parallel coordinates use the Optuna study "
        f"from {source} ({len(study.trials)} final trials)."
    )
    metric = data.objective[0]
    n_done = sum(t.state.name == "COMPLETE" for t in study.trials)
    _figure(
        result,
        folder,
        "importances",
        lambda: FO.importance_figure(data.name, FO.importances(study), n_done),
    )
    _figure(result, folder, "history", lambda: FO.history_figure(study, metric))
    _figure(
        result,
        folder,
        "parallel",
        lambda: FO.parallel_figure(data.name, study, space(data), metric),
    )
    best = best_trial(data, data.trials)
    maps = download_maps(data, best, folder / "qualitative") if best else []
    if not maps:
        result.notes.append("qualitative figure skipped: the best trial has no maps_*.png")
        return
    title = f"{data.name}: best trial #{best.number} (run {best.run_id[:8]}), test images, "
    title += "ground truth, anomaly maps"
    _figure(result, folder, "qualitative", lambda: F.qualitative_figure(maps, title))


MARKER = ".dhkd-report"


def clean(
    out: Path,
    outputs: tuple[str, ...] = OUTPUTS,
    marker: str = MARKER,
    writer: str = "dhkd report",
    what: str = "report",
) -> None:
    """Remove what an earlier `writer` run wrote into `out` (only its `outputs`); refuse a
    non-empty folder without its `marker` (e.g. --out .), so nothing else is ever deleted."""
    if any(out.iterdir()) and not (out / marker).is_file():
        from dhkd.errors import DhkdError

        raise DhkdError(
            f"{out} is not empty and holds no earlier {what} ({marker} is missing); "
            "pass --out with a new or empty folder"
        )
    for name in outputs:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    (out / marker).write_text(f"written by `{writer}`; its outputs here are replaced on rerun\n")


def build_report(
    name: str,
    tracking_uri: str,
    out: str | Path,
    *,
    paper: bool = False,
    storage_path: str | Path | None = None,
    baseline: str | None = None,
    log_artifacts: bool = True,
    command: str = "",
    latex_layout: str = DEFAULT_LAYOUT,
) -> ReportResult:
    """Write the report of study `name` into `out` (see the module docstring); `latex_layout`
    is one of latex.LAYOUTS."""
    from dhkd.report.html import write_html
    from dhkd.report.readme import write_readme

    if latex_layout not in LAYOUTS:
        from dhkd.errors import DhkdError

        raise DhkdError(
            f"unknown LaTeX layout {latex_layout!r}; choose one of {', '.join(LAYOUTS)}"
        )
    data = load_study(name, tracking_uri)
    cols = columns(data)
    base = resolve_baseline(cols, baseline)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clean(out)
    tables = {m: build_table(data, cols, m, paper=paper, baseline=base) for m in METRICS}
    result = ReportResult(out, tables, notes=list(data.notes))
    result.loo = study_leave_one_out(data, cols, result.notes)
    result.threshold = study_threshold(data, cols)
    write_tables(tables, out, latex_layout, result.loo, result.threshold)
    write_figures(data, cols, result, storage_path)
    meta = {
        "study": data.name,
        "tracking_uri": portable_text(tracking_uri),  # no machine-specific paths (paths.py)
        "experiment_id": data.experiment_id,
        "study_run_id": data.study_run_id,
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": portable_text(command),
        "paper": paper,
        "latex_layout": latex_layout,
        "columns": {c.key: c.trial.run_id if c.trial else None for c in cols},
        "partial": {m: t.partial for m, t in tables.items()},
        "leave_one_out": result.loo.to_json() if result.loo else None,
        "agreement": agreement_json(data, cols),  # validation vs test ranking (agreement.py)
        "threshold": result.threshold.to_json() if result.threshold else None,
        "weights": dict(zip(("trials", "bytes"), kept_weights(data), strict=True)),
    }
    result.notes = [portable_text(note) for note in result.notes]
    (out / "report.json").write_text(json.dumps(meta, indent=1) + "\n")
    write_readme(data, cols, result, meta)
    write_html(out, f"Report: study {data.name}")
    if log_artifacts:
        client, _ = client_for(data.tracking_uri)
        client.log_artifacts(data.study_run_id, str(out), artifact_path="report")
        result.logged_to = data.study_run_id
    return result
