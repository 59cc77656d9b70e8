"""Leave-one-category-out selection: how a setting chosen on some categories does on another.

A default must carry over to categories nobody tuned on. For each held-out category, the
setting (column) with the best mean of the criterion metric over the OTHER categories is chosen,
and its numbers on the held-out category are recorded; the held-out category's own numbers never
choose. The mean of those held-out numbers estimates the chosen setting's performance on an
unseen category. The in-sample choice (best mean over every category) is kept for comparison.

Plain dicts in, plain dataclasses out: values[column][category][metric] = number, as
dhkd.metrics returns them (fractions; the tables show percent). Nothing here reads MLflow
(the study report's glue is loo_study.py).
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import asdict, dataclass

from dhkd.errors import DhkdError
from dhkd.report.collect import METRICS
from dhkd.report.latex import DEFAULT_LAYOUT, LAYOUTS, TABCOLSEP, latex_escape
from dhkd.report.tables import TITLES

MODES = ("max", "min")
ESTIMATE = "LOO estimate"
IN_SAMPLE = "In-sample choice"
DIFFERS = "*"  # marks a held-out choice that differs from the in-sample one
MISSING = "–"

Values = dict[str, dict[str, dict[str, float]]]

# how the tables title the stored threshold's measures (dhkd.threshold), beside TITLES' metrics
DECISION_TITLES = {
    "threshold_ba_ratio": "Threshold BA ratio",
    "threshold_recall": "Threshold recall",
    "threshold_fpr": "Threshold false-alarm rate",
    "threshold_precision": "Threshold precision",
}


MEAN_OF_METRICS = "mean_of_metrics"  # a criterion: the mean of METRICS on a category
CRITERION_TITLES = {MEAN_OF_METRICS: "score (the mean of image AUROC, pixel AUROC and AU-PRO)"}


def metric_title(metric: str) -> str:
    return TITLES.get(metric) or DECISION_TITLES.get(metric) or CRITERION_TITLES.get(metric, metric)


def with_mean_of_metrics(values: Values) -> Values:
    """`values` with MEAN_OF_METRICS added on every category that has all of METRICS."""
    out: Values = {}
    for column, cats in values.items():
        out[column] = {}
        for cat, got in cats.items():
            row = dict(got)
            if all(m in got for m in METRICS):
                row[MEAN_OF_METRICS] = _mean([got[m] for m in METRICS])
            out[column][cat] = row
    return out


@dataclass(frozen=True)
class HeldOut:
    category: str
    chosen: str | None  # the column chosen on the other categories; None: no column has them all
    values: dict[str, float]  # the chosen column's numbers on `category`, every metric it has
    differs: bool  # chosen differs from the in-sample choice


@dataclass(frozen=True)
class LooResult:
    metric: str  # the criterion
    mode: str  # max | min
    columns: list[str]  # candidates, in the given order (ties go to the first)
    held_out: list[HeldOut]
    in_sample: str | None  # the best mean over every category (None: no column has them all)
    in_sample_values: dict[str, float]  # the in-sample column's mean over the categories
    estimate: dict[str, float]  # per metric with a value on every held-out category: their mean
    counts: dict[str, int]  # per metric, how many held-out categories have a value

    @property
    def categories(self) -> list[str]:
        return [h.category for h in self.held_out]

    @property
    def n_differ(self) -> int:
        return sum(h.differs for h in self.held_out)

    def to_json(self) -> dict:
        return {**asdict(self), "n_differ": self.n_differ}


@dataclass(frozen=True)
class Baseline:
    """Numbers to set beside each held-out row, e.g. a reference method's: category -> metric."""

    key: str
    label: str
    values: dict[str, dict[str, float]]


def _mean(numbers: list[float]) -> float:
    return math.fsum(numbers) / len(numbers)  # exact sum: equal multisets give equal means


def _choose(values: Values, columns: list[str], cats: list[str], metric: str, mode: str):
    """The column with the best mean of `metric` over `cats` among those that have all of them;
    ties go to the first in `columns`."""
    best, best_score = None, None
    sign = 1.0 if mode == "max" else -1.0
    for col in columns:
        got = [values[col].get(c, {}).get(metric) for c in cats]
        if any(v is None for v in got):
            continue
        score = sign * _mean(got)
        if best_score is None or score > best_score:
            best, best_score = col, score
    return best


def _averages(rows: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, int]]:
    """Per metric: the mean over `rows` where every row has it, and how many rows have it."""
    metrics = list(dict.fromkeys(m for row in rows for m in row))
    got = {m: [row[m] for row in rows if m in row] for m in metrics}
    means = {m: _mean(v) for m, v in got.items() if len(v) == len(rows)}
    return means, {m: len(v) for m, v in got.items()}


def leave_one_out(values: Values, metric: str, mode: str = "max") -> LooResult:
    """Choose a column per held-out category on the other categories' `metric` (see the module
    docstring). Categories: those where some column has `metric`, in first-seen order; columns:
    those with `metric` on some category. Needs 3 categories and 2 columns (DhkdError)."""
    if mode not in MODES:
        raise DhkdError(f"mode {mode!r} is not one of {', '.join(MODES)}: pass max or min")
    columns = [col for col, cats in values.items() if any(metric in m for m in cats.values())]
    cats = list(dict.fromkeys(c for col in columns for c, m in values[col].items() if metric in m))
    if len(cats) < 3:
        have = ", ".join(cats) or "none"
        raise DhkdError(
            f"leave-one-category-out needs at least 3 categories with {metric} (one held out, "
            f"two to choose on); got {len(cats)} ({have}): add the values of more categories"
        )
    if len(columns) < 2:
        lacking = [col for col in values if col not in columns]
        also = f"; without {metric}: {', '.join(lacking)}" if lacking else ""
        raise DhkdError(
            f"leave-one-category-out needs at least 2 columns with {metric} to choose from; got "
            f"{len(columns)} ({', '.join(columns) or 'none'}){also}: add the values of another "
            "column"
        )
    in_sample = _choose(values, columns, cats, metric, mode)
    in_sample_values = _averages([values[in_sample][c] for c in cats])[0] if in_sample else {}
    held_out = []
    for cat in cats:
        chosen = _choose(values, columns, [c for c in cats if c != cat], metric, mode)
        got = dict(values[chosen].get(cat, {})) if chosen else {}
        differs = chosen is not None and in_sample is not None and chosen != in_sample
        held_out.append(HeldOut(cat, chosen, got, differs))
    estimate, counts = _averages([h.values for h in held_out])
    return LooResult(metric, mode, columns, held_out, in_sample, in_sample_values, estimate, counts)


@dataclass(frozen=True)
class Row:
    """One line of the rendered table (numbers are fractions; Δ = value - baseline)."""

    name: str
    chosen: str  # a column key, or "" (the estimate row)
    differs: bool
    values: dict[str, float | None]
    baseline: dict[str, float | None]
    delta: dict[str, float | None]


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _mean_of(numbers: list[float | None]) -> float | None:
    """The mean, or None when a number is missing."""
    return None if not numbers or None in numbers else _mean(numbers)


def rows(result: LooResult, baseline: Baseline | None = None, metrics=METRICS) -> list[Row]:
    """The held-out rows, then the estimate row (means of the rows above) and the in-sample row
    (the in-sample column's mean over every category); a mean with a missing number is None."""
    base = baseline.values if baseline else {}
    out = []
    for h in result.held_out:
        ref = {m: base.get(h.category, {}).get(m) for m in metrics}
        vals = {m: h.values.get(m) for m in metrics}
        delta = {m: _delta(vals[m], ref[m]) for m in metrics}
        out.append(Row(h.category, h.chosen or "", h.differs, vals, ref, delta))
    ref_mean = {m: _mean_of([r.baseline[m] for r in out]) for m in metrics}
    estimate = {m: result.estimate.get(m) for m in metrics}
    delta = {m: _delta(estimate[m], ref_mean[m]) for m in metrics}
    out.append(Row(ESTIMATE, "", False, estimate, ref_mean, delta))
    in_sample = {m: result.in_sample_values.get(m) for m in metrics}
    delta = {m: _delta(in_sample[m], ref_mean[m]) for m in metrics}
    out.append(Row(IN_SAMPLE, result.in_sample or "", False, in_sample, ref_mean, delta))
    return out


def percent(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.1f}"


def signed(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:+.1f}"


def chosen_text(row: Row, labels: dict[str, str]) -> str:
    if not row.chosen:
        return "" if row.name == ESTIMATE else "no column has every other category"
    return labels.get(row.chosen, row.chosen) + (f" {DIFFERS}" if row.differs else "")


def best(mode: str) -> str:
    return "highest" if mode == "max" else "lowest"


def notes(result: LooResult, labels: dict[str, str], baseline: Baseline | None = None) -> list:
    """What the table shows, as plain sentences."""
    title = metric_title(result.metric)
    n = len(result.held_out)
    in_sample = labels.get(result.in_sample, result.in_sample) if result.in_sample else "none"
    out = [
        f"Each row: the column with the {best(result.mode)} mean {title} over the other "
        f"{n - 1} categories, and its numbers on the held-out category, in %.",
        f"{ESTIMATE}: the mean of the held-out rows; {IN_SAMPLE}: the column with the "
        f"{best(result.mode)} mean over all {n} categories ({in_sample}) and its mean, an "
        "optimistic figure for comparison.",
        f"{result.n_differ} of {n} held-out categories chose another column than the "
        f"in-sample choice (marked {DIFFERS}).",
    ]
    short = [m for m in METRICS if result.counts.get(m, 0) < n]
    if short:
        out.append(
            "No estimate (–) where a held-out value is missing: "
            + ", ".join(f"{TITLES[m]} has {result.counts.get(m, 0)} of {n}" for m in short)
            + "."
        )
    if baseline is not None:
        out.append(
            f"{baseline.label}: its numbers on the same category (in the last two rows, its mean "
            f"over the categories); Δ = the row's value - {baseline.label}."
        )
    return out


def to_markdown(
    result: LooResult,
    labels: dict[str, str] | None = None,
    baseline: Baseline | None = None,
    title: str = "Leave-one-category-out",
    metrics=METRICS,
) -> str:
    """The table in Markdown: a row per held-out category, the estimate and the in-sample row,
    under a `### title` heading (none when title is empty)."""
    labels = labels or {}
    head = ["Held-out category", "Chosen on the other categories"]
    for m in metrics:
        head.append(metric_title(m))
        if baseline is not None:
            head += [f"{metric_title(m)}, {baseline.label}", "Δ"]
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|:--|:--|" + "|".join("--:" for _ in head[2:]) + "|")
    for row in rows(result, baseline, metrics):
        texts = []
        for m in metrics:
            texts.append(percent(row.values[m]))
            if baseline is not None:
                texts += [percent(row.baseline[m]), signed(row.delta[m])]
        name = row.name if row.name in result.categories else f"**{row.name}**"
        lines.append(f"| {name} | {chosen_text(row, labels)} | " + " | ".join(texts) + " |")
    lines.append("")
    lines += [f"- {note}" for note in notes(result, labels, baseline)]
    return "\n".join(lines) + "\n"


def to_csv(
    result: LooResult,
    labels: dict[str, str] | None = None,
    baseline: Baseline | None = None,
    metrics=METRICS,
) -> str:
    """The table as CSV, percent with one decimal (empty where there is no value)."""
    labels = labels or {}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    head = ["held_out", "chosen", "chosen_label", "differs_from_in_sample"]
    for m in metrics:
        head.append(m)
        if baseline is not None:
            head += [f"{baseline.key} {m}", f"delta {m}"]
    writer.writerow(head)
    for row in rows(result, baseline, metrics):
        line: list[object] = [row.name, row.chosen, labels.get(row.chosen, row.chosen)]
        line.append(str(row.differs).lower() if row.name in result.categories else "")
        for m in metrics:
            numbers = [row.values[m]]
            if baseline is not None:
                numbers += [row.baseline[m], row.delta[m]]
            line += ["" if v is None else f"{100 * v:.1f}" for v in numbers]
        writer.writerow(line)
    return buf.getvalue()


def _tex_number(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "--"
    return f"${100 * value:+.1f}$" if sign else f"{100 * value:.1f}"


def to_latex(
    result: LooResult,
    labels: dict[str, str] | None = None,
    baseline: Baseline | None = None,
    *,
    study: str,
    layout: str = DEFAULT_LAYOUT,
    note: str = "",
    metrics=METRICS,
) -> str:
    """The table as a float in the style of latex.to_latex (booktabs, scaled down to the line
    width); `table*` under `twocolumn` when it has baseline columns; `note` ends the caption."""
    if layout not in LAYOUTS:
        raise DhkdError(f"unknown LaTeX layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    labels = labels or {}
    env = "table*" if layout == "twocolumn" and baseline is not None else "table"
    per = 3 if baseline is not None else 1
    caption = [
        rf"Leave-one-category-out (\%), study \texttt{{{latex_escape(study)}}}.",
        *(latex_escape(n) for n in notes(result, labels, baseline)),
        latex_escape(note),
    ]
    out = [rf"\begin{{{env}}}[t]", r"\centering"]
    if layout == "compact":
        out += [r"\footnotesize", rf"\setlength{{\tabcolsep}}{{{TABCOLSEP['compact']:g}pt}}"]
    else:
        out.append(r"\small")
    label = re.sub(r"[^A-Za-z0-9:.-]+", "-", f"tab:{study}-leave-one-out")
    out += [rf"\caption{{{' '.join(c for c in caption if c)}}}", rf"\label{{{label}}}"]
    out.append(r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%")
    out += [rf"\begin{{tabular}}{{@{{}}ll{'c' * per * len(metrics)}@{{}}}}", r"\toprule"]
    titles = [latex_escape(metric_title(m)) for m in metrics]
    if baseline is not None:
        spans = [rf"\multicolumn{{3}}{{c}}{{{t}}}" for t in titles]
        rules = [rf"\cmidrule(lr){{{3 + 3 * i}-{5 + 3 * i}}}" for i in range(len(metrics))]
        out += [" & & " + " & ".join(spans) + r" \\", "".join(rules)]
        titles = ["LOO", latex_escape(baseline.label), r"$\Delta$"] * len(metrics)
    out += ["Held-out & Chosen on the others & " + " & ".join(titles) + r" \\", r"\midrule"]
    for row in rows(result, baseline, metrics):
        if row.name == ESTIMATE:
            out.append(r"\midrule")
        chosen = latex_escape(chosen_text(row, labels))
        texts = []
        for m in metrics:
            texts.append(_tex_number(row.values[m]))
            if baseline is not None:
                texts += [_tex_number(row.baseline[m]), _tex_number(row.delta[m], sign=True)]
        out.append(f"{latex_escape(row.name)} & {chosen} & " + " & ".join(texts) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", "}", rf"\end{{{env}}}"]
    return "\n".join(out) + "\n"
