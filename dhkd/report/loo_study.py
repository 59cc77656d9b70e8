"""The study report's leave-one-category-out section: loo.leave_one_out on a study's columns.

Candidates: the non-reference columns (select.columns) with a COMPLETE trial; values: the final
MLflow metric `test/<category>/<metric>` of each column's trial (tables.metric_key); criterion:
the study objective's metric and mode. The reference column, when the study has one, is the
baseline. The section exists when the study has 3 categories and 2 such columns; it is written
as tables/leave_one_out.md|.csv|.tex, provenance rows, "leave_one_out" in report.json and a
README section.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dhkd.data.selection import protocol_label
from dhkd.errors import DhkdError
from dhkd.report import loo
from dhkd.report.collect import METRICS, StudyData, Trial
from dhkd.report.render import fingerprint_fields
from dhkd.report.select import REFERENCE, Column
from dhkd.report.tables import TITLES, metric_key

FILE = "leave_one_out"  # tables/<FILE>.md|.csv|.tex and the provenance rows' table
TEST_IMAGES = (
    "The choices here are made on the other categories' TEST numbers; the held-out category's "
    "numbers never chose anything."
)


@dataclass
class StudyLoo:
    study: str
    result: loo.LooResult
    labels: dict[str, str]  # column key -> label
    baseline: loo.Baseline | None
    provenance: list[dict[str, Any]]  # one row per measured number (build.write_tables)

    def to_json(self) -> dict[str, Any]:
        baseline = None
        if self.baseline is not None:
            baseline = {"key": self.baseline.key, "label": self.baseline.label,
                        "values": self.baseline.values}  # fmt: skip
        return {
            **self.result.to_json(),
            "values": "test/<category>/<metric> of each column's trial (fractions)",
            "labels": self.labels,
            "baseline": baseline,
        }


def numbers(trial: Trial, categories: list[str], metrics: list[str]) -> dict:
    """category -> metric -> the trial's final `test/<category>/<metric>` (present ones)."""
    out: dict[str, dict[str, float]] = {}
    for cat in categories:
        got = {m: trial.metric(metric_key(cat, m)) for m in metrics}
        out[cat] = {m: v for m, v in got.items() if v is not None}
    return out


def number_rows(
    col: Column, category: str, metrics, prefix: str = "", table: str = FILE
) -> list[dict[str, Any]]:
    """Provenance: one row per number of `col`'s trial on `category` in the CSV column
    `<prefix><metric>` of `table`."""
    rows = []
    for m in metrics:
        raw = col.trial.metric(metric_key(category, m))
        if raw is None:
            continue
        rows.append(
            {
                "table": table,
                "row": category,
                "column": prefix + m,
                "label": col.label,
                "quantity": "mean",
                "value": 100.0 * raw,
                "source": "mlflow metric (x100)",
                "run_id": col.trial.run_id,
                "trial_number": col.trial.number,
                "metric_key": metric_key(category, m),
                "mlflow_value": raw,
                **fingerprint_fields(col.trial.tags),
            }
        )
    return rows


def study_leave_one_out(data: StudyData, cols: list[Column], notes: list[str]) -> StudyLoo | None:
    """The section's result; None (and, where the metrics are missing, a line in `notes`) when
    the study has fewer than 3 categories or 2 non-reference columns with a COMPLETE trial."""
    candidates = [c for c in cols if c.key != REFERENCE and c.trial is not None]
    if len(data.categories) < 3 or len(candidates) < 2:
        return None
    metric, mode = data.objective
    metrics = list(dict.fromkeys([*METRICS, metric]))
    values = {c.key: numbers(c.trial, data.categories, metrics) for c in candidates}
    try:
        result = loo.leave_one_out(values, metric, mode)
    except DhkdError as exc:
        notes.append(f"Leave-one-category-out skipped (test/<category>/<metric> of the columns' "
                     f"trials): {exc}")  # fmt: skip
        return None
    reference = next((c for c in cols if c.key == REFERENCE and c.trial is not None), None)
    baseline = None
    if reference is not None:
        ref_numbers = numbers(reference.trial, data.categories, metrics)
        baseline = loo.Baseline(REFERENCE, reference.label, ref_numbers)
    by_key = {c.key: c for c in candidates}
    rows = []
    for held in result.held_out:
        if held.chosen is not None:
            rows += number_rows(by_key[held.chosen], held.category, METRICS)
        if reference is not None:
            rows += number_rows(reference, held.category, METRICS, f"{REFERENCE} ")
    labels = {c.key: c.label for c in cols}
    return StudyLoo(data.name, result, labels, baseline, rows)


def write_leave_one_out(study: StudyLoo, folder: Path, layout: str) -> None:
    """tables/leave_one_out.md|.csv|.tex."""
    title = f"Leave-one-category-out — study `{study.study}`"
    write_loo_tables(study.result, study.labels, study.baseline, study.study, folder, FILE,
                     title, layout)  # fmt: skip


def write_loo_tables(
    result: loo.LooResult,
    labels: dict[str, str],
    baseline: loo.Baseline | None,
    study: str,
    folder: Path,
    stem: str,
    title: str,
    layout: str,
) -> None:
    """folder/<stem>.md|.csv|.tex of a leave-one-category-out table, each saying that the
    choices were made on the other categories' test numbers."""
    args = (result, labels, baseline)
    md = loo.to_markdown(*args, title=title) + f"- {TEST_IMAGES}\n"
    (folder / f"{stem}.md").write_text(md)
    (folder / f"{stem}.csv").write_text(loo.to_csv(*args))
    tex = loo.to_latex(*args, study=study, layout=layout, note=TEST_IMAGES)
    (folder / f"{stem}.tex").write_text(tex)


def readme_lines(study: StudyLoo, protocol: str) -> list[str]:
    """The README section: what is chosen on what, the outcome, the table and its files."""
    result = study.result
    title = TITLES.get(result.metric, result.metric)
    n = len(result.held_out)
    in_sample = study.labels.get(result.in_sample or "", "none")
    estimate = result.estimate.get(result.metric)
    optimistic = result.in_sample_values.get(result.metric)
    outcome = (
        f"In-sample choice: {in_sample}; {result.n_differ} of {n} held-out categories chose "
        "another column."
    )
    if estimate is not None and optimistic is not None:
        outcome += (
            f" {title}: LOO estimate {100 * estimate:.1f}, in-sample choice's mean "
            f"{100 * optimistic:.1f}."
        )
    return [
        "## Leave-one-category-out",
        "",
        "Would a column chosen here carry over to a category nobody tuned on? For each "
        f"category, the column with the {loo.best(result.mode)} mean test {title} over the OTHER "
        "categories is chosen, and its test numbers on the held-out category are shown; the "
        "mean of those rows estimates how the chosen setting does on an unseen category. "
        f"{TEST_IMAGES} Each column's trial was itself chosen by validation "
        f"({protocol_label(protocol)}).",
        "",
        outcome,
        "",
        loo.to_markdown(result, study.labels, study.baseline, title="Leave-one-category-out"),
        f"Files: [Markdown](tables/{FILE}.md), [LaTeX](tables/{FILE}.tex), "
        f"[CSV](tables/{FILE}.csv). The held-out rows' numbers are MLflow metrics listed in "
        "[provenance.csv](provenance.csv); the last two rows"
        + (" and the Δ" if study.baseline else "")
        + " are computed from the metrics listed there.",
        "",
    ]
