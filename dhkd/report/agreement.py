"""How far a study's validation can be trusted: does it order the table's columns as the test does?

A study chooses each column (select.columns) on validation numbers (`val/<category>/<metric>`)
and reports test numbers (`test/<category>/<metric>`). Under the default `synthetic` protocol
validation is held-out good train images plus synthetic defects, which can rank settings the
wrong way round on real defects. For each metric this module compares, within each category,
every pair of columns that has both a validation and a test value: the pair is concordant when
validation and test order it alike (pairs tied on either side, |diff| < 1e-9, are left out), and
Kendall tau-b per category summarises the same ordering (averaged over the categories with at
least three columns). The verdict on the study's objective metric goes into the report.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from dhkd.report.collect import METRICS, StudyData, Trial
from dhkd.report.select import Column
from dhkd.report.tables import AVERAGE, TITLES, VALIDATION, metric_key

TIE = 1e-9  # a difference smaller than this on either side leaves the pair out
MIN_PAIRS = 3  # fewer comparable pairs on the objective metric: "too few"
MIN_FRACTION = 0.7  # concordant fraction below this on the objective metric: "low"
MIN_TAU = 0.4  # mean Kendall tau below this on the objective metric: "low"
MIN_TAU_COLUMNS = 3  # categories with fewer columns have no tau in the mean


@dataclass
class Agreement:
    """Validation/test agreement of one metric over the columns of a study's tables."""

    metric: str
    pairs: int  # comparable column pairs (same category, no tie on either side)
    concordant: int  # of those, ordered alike by validation and test
    tau: dict[str, float | None] = field(default_factory=dict)  # category -> Kendall tau-b
    mean_tau: float | None = None  # over the categories with >= MIN_TAU_COLUMNS columns
    columns: int = 0  # columns with a (validation, test) pair in some category
    categories: int = 0  # categories with at least one such pair

    @property
    def fraction(self) -> float | None:
        return self.concordant / self.pairs if self.pairs else None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "fraction": self.fraction}


@dataclass
class Verdict:
    """The study's agreement: one Agreement per metric and the verdict on the objective."""

    objective: str
    protocol: str
    verdict: str  # ok | low | too few
    metrics: dict[str, Agreement]

    def to_json(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "protocol": self.protocol,
            "verdict": self.verdict,
            "trivial": self.protocol == "test",  # validation images = test images
            "metrics": {m: a.to_json() for m, a in self.metrics.items()},
        }


def _value(trial: Trial, split: str, category: str, metric: str, single: bool) -> float | None:
    """The `split` (val | test) value of one category: `<split>/<category>/<metric>`, or in a
    single-category study also its whole-run key (tables.metric_key: `test/<metric>` of the
    Average row, `val/<metric>` of the Validation row), which is then the same number."""
    value = trial.metric(f"{split}/{category}/{metric}")
    if value is None and single:
        value = trial.metric(metric_key(AVERAGE if split == "test" else VALIDATION, metric))
    return value if value is not None and math.isfinite(value) else None


def pairs(data: StudyData, cols: list[Column], metric: str) -> dict[str, dict[str, tuple]]:
    """category -> column key -> (validation, test) of every column with both values (the
    reference column too, when its run logged validation metrics)."""
    single = len(data.categories) == 1
    out: dict[str, dict[str, tuple]] = {}
    for cat in data.categories:
        for col in cols:
            if col.trial is None:
                continue
            val = _value(col.trial, "val", cat, metric, single)
            test = _value(col.trial, "test", cat, metric, single)
            if val is not None and test is not None:
                out.setdefault(cat, {})[col.key] = (val, test)
    return out


def _tau(points: list[tuple[float, float]]) -> float | None:
    from scipy.stats import kendalltau

    if len(points) < 2:
        return None
    tau = kendalltau([v for v, _ in points], [t for _, t in points]).statistic
    return float(tau) if tau is not None and math.isfinite(tau) else None  # constant: none


def measure(data: StudyData, cols: list[Column], metric: str) -> Agreement:
    """Concordant column pairs and Kendall tau of one metric (module docstring)."""
    by_cat = pairs(data, cols, metric)
    n = same = 0
    taus: dict[str, float | None] = {}
    for cat, values in by_cat.items():
        points = list(values.values())
        for (va, ta), (vb, tb) in itertools.combinations(points, 2):
            dv, dt = va - vb, ta - tb
            if abs(dv) < TIE or abs(dt) < TIE:
                continue
            n += 1
            same += (dv > 0) == (dt > 0)
        taus[cat] = _tau(points)
    counted = [taus[c] for c, v in by_cat.items() if len(v) >= MIN_TAU_COLUMNS]
    counted = [t for t in counted if t is not None]
    mean = sum(counted) / len(counted) if counted else None
    keys = {k for values in by_cat.values() for k in values}
    return Agreement(metric, n, same, taus, mean, len(keys), len(by_cat))


def verdict_of(agreement: Agreement) -> str:
    """The verdict: `too few` (< MIN_PAIRS comparable pairs), `low` (concordant fraction
    < MIN_FRACTION or mean tau < MIN_TAU), else `ok`."""
    if agreement.pairs < MIN_PAIRS:
        return "too few"
    low_tau = agreement.mean_tau is not None and agreement.mean_tau < MIN_TAU
    return "low" if agreement.fraction < MIN_FRACTION or low_tau else "ok"


def study_agreement(data: StudyData, cols: list[Column]) -> Verdict:
    """Every metric's agreement over `cols` and the verdict on the study's objective metric."""
    metrics = {m: measure(data, cols, m) for m in METRICS}
    objective = data.objective[0]
    if objective not in metrics:
        metrics[objective] = measure(data, cols, objective)
    return Verdict(objective, data.protocol, verdict_of(metrics[objective]), metrics)


def _title(metric: str, start: bool = False) -> str:
    """The tables' title of a metric, mid-sentence ("pixel AUROC", "AU-PRO") or at its start."""
    title = TITLES.get(metric, metric).removesuffix("@0.3")
    if start or not title[1:2].islower():
        return title
    return title[0].lower() + title[1:]


def _count(n: int, word: str, plural: str = "") -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def _numbers(a: Agreement, long: bool) -> str:
    if not a.pairs:
        return "no comparable column pairs"
    pct = f"{100 * a.fraction:.0f}%"
    text = (f"{a.concordant} of {_count(a.pairs, 'column pair')} ordered alike ({pct})" if long
            else f"{a.concordant} of {a.pairs} ({pct})")  # fmt: skip
    if a.mean_tau is not None:
        tau = f"{a.mean_tau:.2f}"
        text += f", Kendall tau {tau} (mean over categories)" if long else f", tau {tau}"
    elif long:
        text += f", no Kendall tau (no category has {MIN_TAU_COLUMNS} columns)"
    return text


def agreement_line(result: Verdict) -> str:
    """The report's one Markdown paragraph (README.md, beside the tables)."""
    main = result.metrics[result.objective]
    categories = _count(main.categories, "category", "categories")
    shape = f"{_count(main.columns, 'column')} × {categories}"
    head = f"**Validation/test agreement** (objective {_title(result.objective)}, {shape}): "
    if result.verdict == "too few":
        head += (f"too few column pairs to say how far validation can be trusted "
                 f"({main.pairs} comparable, at least {MIN_PAIRS} needed)")  # fmt: skip
    else:
        head += _numbers(main, long=True)
    others = [m for m in result.metrics if m != result.objective]
    parts = [f"{_title(m, start=not i)}: {_numbers(result.metrics[m], long=False)}"
             for i, m in enumerate(others)]  # fmt: skip
    text = " ".join([head + ".", *(["; ".join(parts) + "."] if parts else [])])
    if result.protocol == "test":
        return text + (
            " Under the protocol `test` the validation images are the test images: agreement "
            "is trivially perfect there by construction, and every number in the tables is "
            "optimistic."
        )
    if result.verdict == "low":
        text += " " + warning(result.protocol)
    return text


def warning(protocol: str) -> str:
    """What a low agreement means, and what to do, under `protocol`."""
    if protocol == "test_fold":
        return (
            "**Warning:** the validation fold ranks the columns differently from the test "
            "fold: the columns differ by less than a fold of this size can resolve, so the "
            "choice of column may not hold; read them as tied, or choose with a larger "
            "`selection.val_fraction` (docs/selection.md)."
        )
    return (
        "**Warning:** validation ranks the columns differently from the test images; its "
        "choice of column may not hold on real defects. Consider `selection: {protocol: "
        "test_fold}` where the categories have real defects to spare (docs/selection.md)."
    )


def agreement_json(data: StudyData, cols: list[Column]) -> dict[str, Any]:
    """report.json's "agreement"."""
    return study_agreement(data, cols).to_json()


def agreement_markdown(data: StudyData, cols: list[Column]) -> str:
    """README.md's agreement paragraph."""
    return agreement_line(study_agreement(data, cols))
