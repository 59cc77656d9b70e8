"""Per-category tables in the DHKD paper's layout: a row per category plus an Average row, a
column per variant (select.columns) and, with --paper, published reference columns.

Every measured cell is the final MLflow metric `<category>/<metric>` (the Average row:
`<metric>`) of the trial its column names, in percent; the seed spread (sample std, ddof=1)
and count come from that trial's metrics.json `units`. Nothing is filled in: a value MLflow
does not have is a missing cell, and the table is marked partial.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dhkd.data.selection import protocol_label
from dhkd.report.collect import StudyData, Trial, load_units
from dhkd.report.published import (
    PublishedColumn,
    load_published,
    published_columns,
    unsourced,
)
from dhkd.report.select import REFERENCE, Column
from dhkd.report.stats import Comparison, adjust, wilcoxon_pair

AVERAGE = "Average"
VALIDATION = "Validation"  # the column's validation metric: what chose its trial
SUMMARY_ROWS = (AVERAGE, VALIDATION)
TITLES = {"image_auroc": "Image AUROC", "pixel_auroc": "Pixel AUROC", "pixel_aupro": "AU-PRO@0.3"}


@dataclass
class Cell:
    value: float | None  # percent
    std: float | None = None  # percent, over seeds
    n: int = 0  # seeds behind the value
    source: str = "missing"  # mlflow | published | missing
    run_id: str | None = None
    metric_key: str | None = None
    raw: float | None = None  # the MLflow metric as logged (fraction)
    seeds: list[int] = field(default_factory=list)
    reason: str = ""  # why a cell is missing
    ref: str = ""  # published: the table it was read from


@dataclass
class TableColumn:
    key: str
    label: str
    kind: str  # measured | published
    trial: Trial | None = None
    note: str = ""


@dataclass
class Table:
    study: str
    metric: str
    rows: list[str]
    columns: list[TableColumn]
    cells: dict[tuple[str, str], Cell]
    notes: list[str] = field(default_factory=list)
    selection: str = ""  # how each column's trial was chosen, one sentence (the LaTeX caption's)
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def title(self) -> str:
        return TITLES.get(self.metric, self.metric)

    @property
    def missing(self) -> list[tuple[str, str]]:
        return [
            (r, c.key)
            for r in self.rows
            for c in self.columns
            if c.kind == "measured" and self.cells[(r, c.key)].value is None
        ]

    @property
    def partial(self) -> bool:
        return bool(self.missing)

    def best_in_row(self, row: str) -> set[str]:
        """Keys of the measured columns with the row's best value (as displayed, 1 decimal)."""
        shown = {
            c.key: round(self.cells[(row, c.key)].value, 1)
            for c in self.columns
            if c.kind == "measured" and self.cells[(row, c.key)].value is not None
        }
        if len(shown) < 2:
            return set()
        top = max(shown.values())
        return {k for k, v in shown.items() if v == top}


def _unit_values(
    units: list[dict] | None, category: str | None, metric: str, split: str = "test"
) -> dict[int, float]:
    """seed -> percent for one category, or (category None) seed -> mean over categories; of
    the test metric (a unit's top-level keys) or the validation one (its "val" dict)."""
    if not units:
        return {}
    by_seed: dict[int, list[float]] = {}
    for u in units:
        values = u.get("val") or {} if split == "val" else u
        if metric in values and (category is None or u.get("category") == category):
            by_seed.setdefault(int(u.get("seed", 0)), []).append(100.0 * float(values[metric]))
    return {s: float(np.mean(v)) for s, v in sorted(by_seed.items())}


def metric_key(row: str, metric: str) -> str:
    """The MLflow key of a table cell: test/<category>/<metric>, test/<metric> (Average) or
    val/<metric> (Validation)."""
    if row == VALIDATION:
        return f"val/{metric}"
    return f"test/{metric}" if row == AVERAGE else f"test/{row}/{metric}"


def measured_cell(data: StudyData, col: Column, row: str, metric: str) -> Cell:
    trial = col.trial
    if trial is None:
        runs = f"{col.n_trials} trial" + "s" * (col.n_trials > 1)
        reason = f"no COMPLETE trial with {col.label} ({runs}, none complete)"
        if not col.n_trials:
            reason = f"no trial ran {col.label}"
        return Cell(None, reason=reason)
    key = metric_key(row, metric)
    raw = trial.metric(key)
    if raw is None:
        return Cell(
            None,
            run_id=trial.run_id,
            metric_key=key,
            reason=f"metric {key} missing from run {trial.run_id} (trial #{trial.number})",
        )
    category = None if row in SUMMARY_ROWS else row
    split = "val" if row == VALIDATION else "test"
    per_seed = _unit_values(load_units(data, trial), category, metric, split)
    values = list(per_seed.values())
    std = float(np.std(values, ddof=1)) if len(values) >= 2 else None
    n = len(values) or len(trial.tags.get("dhkd.seeds", "0").split(","))
    return Cell(100.0 * raw, std, n, "mlflow", trial.run_id, key, raw, list(per_seed))


def published_cell(col: PublishedColumn, row: str) -> Cell:
    if row == VALIDATION:
        return Cell(None, source="published", reason="no validation value", ref=col.source)
    value = col.mean if row == AVERAGE else col.values.get(row)
    if value is None:
        reason = "mean only" if col.means_only else f"no published value for {row}"
        return Cell(None, source="published", reason=reason, ref=col.source)
    return Cell(value, source="published", ref=col.source)


def build_table(
    data: StudyData,
    cols: list[Column],
    metric: str,
    *,
    paper: bool = False,
    baseline: str | None = None,
    published: tuple[str, ...] | None = None,
) -> Table:
    """The table of one metric; `baseline` is a column key (default: the first column);
    `published`: with `paper`, only these published methods (keys of published_results.json)."""
    rows = [*data.categories, *SUMMARY_ROWS]
    columns = [TableColumn(c.key, c.label, "measured", c.trial) for c in cols]
    cells = {(r, c.key): measured_cell(data, c, r, metric) for c in cols for r in rows}
    pub = published_columns(metric) if paper else []
    if published is not None:
        pub = [p for p in pub if p.key.removeprefix("published:") in published]
    for p in pub:
        note = "mean only" if p.means_only else ""
        columns.append(TableColumn(p.key, p.label, "published", note=note))
        cells.update({(r, p.key): published_cell(p, r) for r in rows})
    table = Table(data.name, metric, rows, columns, cells)
    if len(cols) > 1:
        table.comparisons = compare(data, table, cols, baseline or cols[0].key)
        if len(cols) > 2 and cols[-1].key == REFERENCE and (baseline or cols[0].key) != REFERENCE:
            against = [c for c in cols if c.key != (baseline or cols[0].key)]  # tested above
            table.comparisons = adjust(
                [*table.comparisons, *compare(data, table, against, REFERENCE, adjusted=False)]
            )
    table.notes = table_notes(data, table, cols, pub)
    table.selection = selection_note(data, cols)
    return table


def _pairs(data: StudyData, table: Table, a: Column, b: Column) -> tuple[list, list, str]:
    """Paired percent values of columns a and b: (category, seed) units, else category means."""
    metric = table.metric
    ua, ub = load_units(data, a.trial), load_units(data, b.trial)
    x, y = [], []
    if ua and ub:
        for cat in data.categories:
            va, vb = _unit_values(ua, cat, metric), _unit_values(ub, cat, metric)
            for seed in sorted(set(va) & set(vb)):
                x.append(va[seed])
                y.append(vb[seed])
        return x, y, "category x seed"
    for cat in data.categories:
        ca, cb = table.cells[(cat, a.key)], table.cells[(cat, b.key)]
        if ca.value is not None and cb.value is not None:
            x.append(ca.value)
            y.append(cb.value)
    return x, y, "category means"


def compare(
    data: StudyData, table: Table, cols: list[Column], baseline: str, adjusted: bool = True
) -> list[Comparison]:
    """Each other column against the `baseline` column (Holm-adjusted unless adjusted=False)."""
    base = next((c for c in cols if c.key == baseline), None)
    if base is None:
        known = ", ".join(c.key for c in cols)
        raise ValueError(f"baseline '{baseline}' is not a column; columns: {known}")
    out = []
    for col in cols:
        if col is base:
            continue
        if col.trial is None or base.trial is None:
            which = col.label if col.trial is None else base.label
            out.append(
                Comparison(
                    col.label,
                    base.label,
                    0,
                    "",
                    None,
                    None,
                    None,
                    reason=f"no COMPLETE trial for {which}",
                )
            )
            continue
        x, y, pairing = _pairs(data, table, col, base)
        out.append(wilcoxon_pair(col.label, base.label, x, y, pairing))
    return adjust(out) if adjusted else out


def selection_note(data: StudyData, cols: list[Column]) -> str:
    metric, mode = data.objective
    protocol = f"validation {metric}, {protocol_label(data.protocol)}"
    if cols[0].assignment:
        return f"Each column: the best complete trial of its value by {mode} {protocol}."
    return f"The best complete trial by {mode} {protocol}."


def table_notes(data: StudyData, table: Table, cols: list[Column], pub: list) -> list[str]:
    metric, mode = data.objective
    ns = {table.cells[(r, c.key)].n for r in table.rows for c in cols} - {0}
    if len(ns) == 1:
        n = ns.pop()
        seeds = f"n = {n} seed{'s' * (n > 1)}"
    else:
        seeds = f"n = {sorted(ns)} seeds, per cell in the CSV"
    notes = [
        f"{table.title} in %, one decimal; mean ± sample std over seeds where there are "
        f"several ({seeds}); Average = the run's metric averaged over its categories."
    ]
    nuisance = ", ".join(data.spec.get("nuisance") or {}) or "none"
    if cols[0].assignment:
        notes.append(
            f"Each column: the best COMPLETE trial of that value by the objective "
            f"({mode} {metric}); nuisance parameters tuned per value: {nuisance}."
        )
    notes.append(
        f"Selection protocol of every column ({data.protocol}): {protocol_label(data.protocol)}. "
        f"Row {VALIDATION}: the validation {table.title} of each column's run (the objective "
        "chose on these images); the other rows are its test numbers."
    )
    if any(c.key == REFERENCE for c in cols):
        notes.append(
            f"{cols[-1].label}: the spec's reference method, measured once per (category, seed) "
            "under the same protocol and settings."
        )
    notes.append("Bold: the best measured value per row.")
    if table.partial:
        notes.append(
            f"PARTIAL: {len(table.missing)} measured cells are missing, shown as – "
            "with the reason in the notes; nothing was filled in."
        )
    if table.comparisons:
        bases = list(dict.fromkeys(c.baseline for c in table.comparisons))
        also = f" and with the reference {bases[1]}" if len(bases) > 1 else ""
        notes.append(
            f"Paired comparisons with the baseline {bases[0]}{also}: "
            "Wilcoxon signed-rank, two-sided, Holm-corrected over this table's "
            "comparisons. With several seeds the pairs are (category, seed) units, and the "
            "seeds of one category are not independent: read p as indicative."
        )
        notes += [f"  {c.text()}" for c in table.comparisons]
    if pub:
        notes.append(
            "† Published values, not measured here: MVTec AD at each paper's own "
            "settings; sources in dhkd/report/published_results.json."
        )
        known = set(load_published()["categories"])
        if not set(data.categories) <= known:
            notes.append(
                "This study's categories are not MVTec AD's: the published columns "
                "have no per-category cells here, and their Average (over MVTec AD) "
                "is not comparable with the measured one."
            )
        missing = unsourced(table.metric)
        if missing:
            notes.append(
                "Not shown (no sourced per-category or mean value here): "
                + ", ".join(missing)
                + "."
            )
    return notes
