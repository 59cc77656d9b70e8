"""The study report's stored-threshold section: how each column's stored threshold decides on
the test images.

Every trained unit stores a good/defective threshold chosen on its validation images by the rule
of its config (`threshold.mode` with `threshold.fraction`, `threshold.target_fpr` or
`threshold.sigmas`; dhkd/threshold.py). Trial runs log, per category, that threshold's
precision, recall, false-alarm rate and BA ratio on the test images as the final MLflow metrics
`test/<category>/threshold_<name>`. Rows: the table columns (select.columns) that have a trial,
the reference only when its run logged these metrics; numbers: the means over the categories
that have them, and the category with the lowest BA ratio. Written as tables/threshold.md|.csv,
provenance rows, "threshold" in report.json and a README section; runs older than these metrics
leave the section at one line.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dhkd.report.collect import StudyData
from dhkd.report.render import MISSING, fingerprint_fields
from dhkd.report.select import REFERENCE, Column

FILE = "threshold"  # tables/<FILE>.md|.csv and the provenance rows' table
MEAN_ROW = "Mean"  # the CSV row of the means over categories
RATIO = "threshold_ba_ratio"
MEASURES = {  # MLflow name -> (CSV header, README header)
    "threshold_precision": ("precision", "Precision"),
    "threshold_recall": ("recall", "Recall"),
    "threshold_fpr": ("false_alarm_rate", "False-alarm rate"),
    RATIO: ("ba_ratio", "BA ratio"),
}
RULE_PARAMS = {  # threshold.mode -> the param that sets where its threshold lies
    "between": "threshold.fraction",
    "fpr": "threshold.target_fpr",
    "good_sigma": "threshold.sigmas",
}
BA_RATIO_TEXT = (
    "BA ratio is the balanced accuracy at the stored threshold, (recall + 1 − false-alarm "
    "rate) / 2, over the best balanced accuracy any threshold reaches on the same test images: "
    "100% means the stored threshold is as good as any threshold could have been there."
)
PREDATES = (
    "The study's runs predate these measures: no trial logged `test/<category>/threshold_<name>`."
)


def metric_key(category: str, measure: str) -> str:
    return f"test/{category}/{measure}"


def rule(params: dict[str, str]) -> str:
    """The threshold rule of a run's flat params, e.g. "between, fraction 0.4"."""
    mode = params.get("threshold.mode")
    if mode is None:
        return "not logged"
    param = RULE_PARAMS.get(mode)
    if param is None or param not in params:
        return mode
    return f"{mode}, {param.removeprefix('threshold.')} {params[param]}"


@dataclass
class ColumnThreshold:
    """One column's stored-threshold numbers (fractions) on the test images."""

    key: str
    label: str
    run_id: str
    trial_number: int
    rule: str
    values: dict[str, dict[str, float]]  # category -> measure -> value (only those logged)
    mean: dict[str, float]  # measure -> mean over the categories that logged it
    worst: str | None  # the category with the lowest BA ratio (the first of a tie)
    missing: list[str] = field(default_factory=list)  # categories without every measure

    @property
    def measured(self) -> bool:
        return bool(self.mean)

    @property
    def header(self) -> str:
        """The column's name as the tables head it."""
        if self.key in ("best", REFERENCE):
            return self.label
        return f"{self.label} (#{self.trial_number})"


@dataclass
class StudyThreshold:
    study: str
    categories: list[str]
    columns: list[ColumnThreshold]
    provenance: list[dict[str, Any]]  # one row per number of the CSV (build.write_tables)

    def to_json(self) -> dict[str, Any]:
        return {
            "values": "test/<category>/threshold_<name> of each column's trial (fractions); "
            "mean: over the categories that logged it",
            "columns": {
                c.key: {k: v for k, v in asdict(c).items() if k != "key"} for c in self.columns
            },
        }


def column_threshold(col: Column, categories: list[str]) -> ColumnThreshold:
    """The numbers of `col`'s trial (which it must have)."""
    trial = col.trial
    values: dict[str, dict[str, float]] = {}
    for cat in categories:
        got = {m: trial.metric(metric_key(cat, m)) for m in MEASURES}
        got = {m: v for m, v in got.items() if v is not None}
        if got:
            values[cat] = got
    mean = {}
    for m in MEASURES:
        logged = [v[m] for v in values.values() if m in v]
        if logged:
            mean[m] = sum(logged) / len(logged)
    ratios = {c: v[RATIO] for c, v in values.items() if RATIO in v}
    worst = min(ratios, key=ratios.__getitem__) if ratios else None
    missing = [c for c in categories if len(values.get(c, {})) < len(MEASURES)]
    return ColumnThreshold(
        col.key,
        col.label,
        trial.run_id,
        trial.number,
        rule(trial.params),
        values,
        mean,
        worst,
        missing if mean else [],
    )


def study_threshold(data: StudyData, cols: list[Column]) -> StudyThreshold | None:
    """The section's numbers; None when no column's trial logged any of them."""
    rows, provenance = [], []
    for col in cols:
        if col.trial is None:
            continue
        row = column_threshold(col, data.categories)
        if row.measured or col.key != REFERENCE:
            rows.append(row)
            provenance += _provenance(row, col.trial.tags)
    if not any(r.measured for r in rows):
        return None
    return StudyThreshold(data.name, list(data.categories), rows, provenance)


def _provenance(row: ColumnThreshold, tags: dict[str, str]) -> list[dict[str, Any]]:
    """One row per number of the CSV: the logged ones by metric key, the means by the keys."""
    base = {
        "table": FILE,
        "label": row.label,
        "run_id": row.run_id,
        "trial_number": row.trial_number,
        **fingerprint_fields(tags),
    }
    out = []
    for cat, values in row.values.items():
        for m, raw in values.items():
            out.append(
                {
                    **base,
                    "row": cat,
                    "column": f"{row.key} {MEASURES[m][0]}",
                    "quantity": "value",
                    "value": 100.0 * raw,
                    "source": "mlflow metric (x100)",
                    "metric_key": metric_key(cat, m),
                    "mlflow_value": raw,
                }
            )
    for m, mean in row.mean.items():
        over = [c for c, values in row.values.items() if m in values]
        out.append(
            {
                **base,
                "row": MEAN_ROW,
                "column": f"{row.key} {MEASURES[m][0]}",
                "quantity": "mean over categories",
                "value": 100.0 * mean,
                "source": "computed (x100)",
                "reference": f"mean of {metric_key('<category>', m)} over " + ", ".join(over),
            }
        )
    return out


def _pct(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.1f}"


def to_markdown(study: StudyThreshold, title: str) -> str:
    """The section's table: one row per column, means over categories and the worst category."""
    heads = [h for _, h in MEASURES.values()]
    lines = [
        f"| Column | Rule | {' | '.join(heads)} | Worst BA ratio (category) |",
        "|:--|:--|" + "--:|" * (len(heads) + 1),
    ]
    for c in study.columns:
        worst = MISSING if c.worst is None else f"{_pct(c.values[c.worst][RATIO])} ({c.worst})"
        numbers = " | ".join(_pct(c.mean.get(m)) for m in MEASURES)
        lines.append(f"| {c.header} | {c.rule} | {numbers} | {worst} |")
    notes = []
    for c in study.columns:
        if not c.measured:
            notes.append(f"- {c.header}: its run predates these measures.")
        elif c.missing:
            notes.append(
                f"- {c.header}: not every measure logged for {', '.join(c.missing)}; "
                "its means are over the categories that have them."
            )
    return "\n".join([f"### {title}", "", *lines, "", *notes]).rstrip("\n") + "\n"


def to_csv(study: StudyThreshold) -> str:
    """One line per (column, category) and a `Mean` line per column; percent, one decimal,
    empty where not logged (provenance.csv keeps full precision)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["column", "label", "trial", "rule", "category", *(h for h, _ in MEASURES.values())]
    )
    for c in study.columns:
        head = [c.key, c.label, c.trial_number, c.rule]
        for cat in study.categories:
            got = c.values.get(cat, {})
            writer.writerow([*head, cat, *(_cell(got.get(m)) for m in MEASURES)])
        writer.writerow([*head, MEAN_ROW, *(_cell(c.mean.get(m)) for m in MEASURES)])
    return buf.getvalue()


def _cell(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def write_threshold(study: StudyThreshold, folder: Path) -> None:
    """tables/threshold.md|.csv."""
    title = f"Stored threshold on the test images — study `{study.study}`"
    text = to_markdown(study, title) + f"- {_explanation()}\n"
    (folder / f"{FILE}.md").write_text(text)
    (folder / f"{FILE}.csv").write_text(to_csv(study))


def _explanation() -> str:
    return (
        "Each trained unit stores a good/defective threshold chosen on its validation images by "
        "the column's rule (`threshold.mode` and its `threshold.*` setting, dhkd/threshold.py); "
        "here it decides on the test images. Means over categories, in %; the false-alarm rate "
        f"is the share of good test images called defective. {BA_RATIO_TEXT}"
    )


def readme_lines(study: StudyThreshold | None) -> list[str]:
    """The README section: the table and its files, or one line for runs that predate it."""
    lines = ["## Stored threshold on the test images", ""]
    if study is None:
        return [*lines, PREDATES, ""]
    return [
        *lines,
        _explanation(),
        "",
        to_markdown(study, "Stored threshold on the test images"),
        f"Files: [Markdown](tables/{FILE}.md), [CSV](tables/{FILE}.csv) (per category). The "
        "per-category numbers are MLflow metrics listed in [provenance.csv](provenance.csv); "
        "the means are computed from them.",
        "",
    ]
