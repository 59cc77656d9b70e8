"""One ablation table per question of a suite, in the paper's style.

A row per setting of the study's scientific parameters (select.columns: the best COMPLETE trial
of each setting by the validation objective), columns the three test metrics' means over the
suite's categories (the run's `test/<metric>`) with the spread over seeds, and each row's paired
test against the baseline row.

The baseline row is the default setting: the row whose values equal what the study's preset
and `fixed` keys resolve to (dhkd.config.load_config). A study that leaves the default out (the
local suite does, to save its training) takes it from another study of the suite that trained
the same method at its defaults on the same data, seeds, preset, selection and `fixed` keys:
the comparison study's trial of that method. Pairs are the (category, seed) units both rows
evaluated; the test is Wilcoxon signed-rank, two-sided, Holm-corrected over the table's rows
per metric (stats.py), and needs 6 pairs with a difference to be run at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from dhkd.config import flatten, load_config
from dhkd.report.collect import METRICS, StudyData, Trial, load_units
from dhkd.report.select import REFERENCE, Column, columns, matches, value_label
from dhkd.report.stats import Comparison, adjust, wilcoxon_pair
from dhkd.report.tables import (
    AVERAGE,
    TITLES,
    VALIDATION,
    Cell,
    _unit_values,
    measured_cell,
)
from dhkd.study.design.spec import StudySpec

METHOD_TITLES = {"dhkd": "DHKD", "bikd": "BiKD", "knn": "kNN"}


def method_title(name: str) -> str:
    return METHOD_TITLES.get(name, name.upper())


@dataclass
class Row:
    key: str  # column key of its study ("noise.sigma=0.5"), or "default"
    label: str  # "σ 0.5"
    column: Column
    data: StudyData  # the study its trial belongs to
    baseline: bool = False
    source: str = ""  # where a borrowed baseline came from ("study local-compare_dhkd_bikd")


@dataclass
class Ablation:
    study: str
    question: str  # the spec's description, first sentence
    method: str
    keys: list[str]  # scientific keys
    rows: list[Row]
    categories: list[str]
    objective: str
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)  # (row key, metric)
    validation: dict[str, Cell] = field(default_factory=dict)  # row key -> objective on val
    tests: dict[str, list[Comparison]] = field(default_factory=dict)  # metric -> per row
    notes: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> Row | None:
        return next((r for r in self.rows if r.baseline), None)

    def comparison(self, row: Row, metric: str) -> Comparison | None:
        return next((c for c in self.tests.get(metric, []) if c.variant == row.label), None)

    @property
    def pairs(self) -> int:
        """The most (category, seed) pairs any test of this table had."""
        return max((c.n_pairs for cs in self.tests.values() for c in cs), default=0)


def defaults(spec: StudySpec) -> dict[str, Any]:
    """Every dotted config key's value for the study's method, preset and fixed keys."""
    overrides = {**spec.fixed, "method": spec.method}
    return flatten(load_config(spec.preset, overrides=overrides).model_dump(mode="json"))


def _same_setup(a: StudySpec, b: StudySpec) -> bool:
    """Whether trials of a and b at the same config train the same models on the same units."""
    return (
        a.preset == b.preset
        and a.fixed == b.fixed
        and a.seeds == b.seeds
        and a.data.model_dump() == b.data.model_dump()
        and a.selection.model_dump() == b.selection.model_dump()
    )


def _method_column(data: StudyData, method: str) -> Column | None:
    """The column of a study that searched `method` for that method, if it has one."""
    return next((c for c in columns(data) if c.assignment.get("method") == method), None)


def borrowed_default(
    spec: StudySpec, others: list[tuple[StudySpec, StudyData]]
) -> tuple[Column, StudyData] | None:
    """The default-config column of `spec`'s method in another study with the same setup:
    a study that searched only `method` (every other key at its default)."""
    for other, data in others:
        if other.name == spec.name or list(other.scientific) != ["method"] or other.nuisance:
            continue
        if not _same_setup(spec, other):
            continue
        col = _method_column(data, spec.method)
        if col is not None and col.trial is not None:
            return col, data
    return None


def _question(spec: StudySpec, keys: list[str]) -> str:
    """What the table asks, from what the study varied (a study's description may be that of
    the paper spec it started from, with other grids or categories)."""
    base = defaults(spec)
    parts = []
    for key in keys:
        values = ", ".join(value_text(v) for v in spec.scientific[key].values)
        parts.append(f"{key} in {{{values}}}, default {value_text(base.get(key))}")
    return "; ".join(parts) or spec.name


def value_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def build_ablation(
    spec: StudySpec, data: StudyData, others: list[tuple[StudySpec, StudyData]]
) -> Ablation:
    """The ablation table of one study (see the module docstring); `others` are the suite's
    studies, for a baseline the study did not train."""
    keys = [k for k, p in spec.scientific.items() if p.type == "categorical"]
    cols = [c for c in columns(data) if c.key != REFERENCE]
    question = _question(spec, keys)
    ablation = Ablation(
        data.name, question, spec.method, keys, [], data.categories, spec.objective.metric
    )
    base_values = defaults(spec)
    rows = [Row(c.key, c.label, c, data) for c in cols]
    for row in rows:
        row.baseline = bool(keys) and all(
            matches(str(base_values.get(k)), v) for k, v in row.column.assignment.items()
        )
    if keys and not any(r.baseline for r in rows):
        borrowed = borrowed_default(spec, others)
        assignment = {k: base_values.get(k) for k in keys}
        label = ", ".join(value_label(k, v) for k, v in assignment.items())
        if borrowed is None:
            ablation.notes.append(
                f"No trial of {data.name} runs the default ({label}), and no other study of the "
                "suite trained it on the same units: the first row is the baseline instead."
            )
        else:
            col, other = borrowed
            column = Column("default", label, assignment, col.trial, 1, 1)
            rows.insert(0, Row("default", label, column, other, True, f"study {other.name}"))
    if rows and not any(r.baseline for r in rows):
        rows[0].baseline = True
    ablation.rows = rows
    for row in rows:
        for metric in METRICS:
            ablation.cells[(row.key, metric)] = measured_cell(row.data, row.column, AVERAGE, metric)
        ablation.validation[row.key] = measured_cell(
            row.data, row.column, VALIDATION, ablation.objective
        )
    base = ablation.baseline
    for metric in METRICS:
        tests = [
            _test(row, base, metric, data.categories)
            for row in rows
            if base is not None and row is not base
        ]
        ablation.tests[metric] = adjust(tests)
    return ablation


def _test(row: Row, base: Row, metric: str, categories: list[str]) -> Comparison:
    a, b = row.column.trial, base.column.trial
    if a is None or b is None:
        which = row.label if a is None else base.label
        return Comparison(
            row.label, base.label, 0, "", None, None, None, reason=f"no COMPLETE trial for {which}"
        )
    ua, ub = load_units(row.data, a), load_units(base.data, b)
    x, y = [], []
    for cat in categories:
        va, vb = _unit_values(ua, cat, metric), _unit_values(ub, cat, metric)
        for seed in sorted(set(va) & set(vb)):
            x.append(va[seed])
            y.append(vb[seed])
    return wilcoxon_pair(row.label, base.label, x, y, "category x seed")


def kendall_agreement(ablation: Ablation, metric: str) -> tuple[float | None, str, str]:
    """(Kendall tau-b between the rows' validation objective and their test `metric` means,
    the row validation picks, the row the test numbers would pick)."""
    from scipy.stats import kendalltau

    pairs = [
        (ablation.validation[r.key].value, ablation.cells[(r.key, metric)].value, r.label)
        for r in ablation.rows
    ]
    pairs = [p for p in pairs if p[0] is not None and p[1] is not None]
    if len(pairs) < 2:
        return None, "", ""
    picked = max(pairs, key=lambda p: p[0])[2]
    best = max(pairs, key=lambda p: p[1])[2]
    if len(pairs) < 3:
        return None, picked, best
    tau = kendalltau([p[0] for p in pairs], [p[1] for p in pairs]).statistic
    return (None if not math.isfinite(tau) else float(tau)), picked, best


def delta(ablation: Ablation, row: Row, metric: str) -> float | None:
    """Row minus baseline, percentage points, of the table's means."""
    base = ablation.baseline
    if base is None or row is base:
        return None
    a, b = ablation.cells[(row.key, metric)].value, ablation.cells[(base.key, metric)].value
    if a is None or b is None:
        return None
    return 0.0 if abs(a - b) < 0.05 else a - b  # no "-0.0" where the shown values agree


def findings(ablation: Ablation) -> list[str]:
    """What the table says, in sentences (no judgement beyond the numbers)."""
    out = []
    base = ablation.baseline
    objective = TITLES.get(ablation.objective, ablation.objective)
    for row in ablation.rows:
        if row is base:
            continue
        parts = []
        for metric in METRICS:
            d = delta(ablation, row, metric)
            if d is not None:
                parts.append(f"{TITLES[metric]} {d:+.1f}")
        if parts and base is not None:
            out.append(f"{row.label} vs {base.label}: " + ", ".join(parts) + " points.")
    tau, picked, best = kendall_agreement(ablation, ablation.objective)
    if picked:
        agree = "the same row" if picked == best else f"{best} on the test images"
        tau_text = f" (Kendall tau {tau:+.2f} over the rows)" if tau is not None else ""
        out.append(
            f"Validation {objective} picks {picked}; the test {objective} picks {agree}{tau_text}."
        )
    tested = [c for c in ablation.tests.get(ablation.objective, []) if c.p is not None]
    if not tested:
        n = ablation.pairs
        out.append(
            f"No paired test: {n} (category, seed) pairs per row, a two-sided Wilcoxon test "
            "needs 6 with a difference."
        )
    return out


def provenance(ablation: Ablation) -> list[dict[str, Any]]:
    rows = []
    for row in ablation.rows:
        for metric in [*METRICS, VALIDATION]:
            cell = (
                ablation.validation[row.key]
                if metric == VALIDATION
                else ablation.cells[(row.key, metric)]
            )
            trial: Trial | None = row.column.trial
            rows.append(
                {
                    "table": f"ablation_{ablation.study}",
                    "row": row.label,
                    "column": TITLES.get(metric, f"validation {ablation.objective}"),
                    "value": None if cell.value is None else round(cell.value, 4),
                    "std": None if cell.std is None else round(cell.std, 4),
                    "study": row.data.name,
                    "run_id": cell.run_id,
                    "trial_number": trial.number if trial else None,
                    "metric_key": cell.metric_key,
                    "mlflow_value": cell.raw,
                    "note": row.source,
                }
            )
    return rows


def seed_counts(ablation: Ablation) -> list[int]:
    return sorted({c.n for c in ablation.cells.values()} - {0})


def spread_text(cell: Cell) -> str:
    return "" if cell.std is None else f" ± {cell.std:.1f}"
