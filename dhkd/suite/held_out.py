"""Leave-one-category-out over each ablation of a suite: would the setting chosen on some
categories carry over to a category nobody tuned on?

Per ablation table, the candidates are its rows (the default row included, borrowed or not):
for each held-out category the row with the best mean test score over the OTHER categories is
chosen (dhkd.report.loo), and its test numbers on the held-out category are set beside the kNN
reference's there (the comparison study's reference column). The score is the mean of the three
test metrics on a category, not the study's objective alone: the bar a default must clear on an
unseen category is on all three, and image AUROC is where the methods trailed on unseen data.
A default survives when every held-out category chooses it; where one chooses another row,
that row's numbers are the held-out estimate. Values: each row trial's final
`test/<category>/<metric>` (the mean over the seeds it ran). Written as
tables/loo_<study>.md|.csv|.tex and provenance rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dhkd.errors import DhkdError
from dhkd.report import loo
from dhkd.report.collect import METRICS, StudyData
from dhkd.report.loo_study import number_rows, numbers, write_loo_tables
from dhkd.report.select import REFERENCE, Column, columns
from dhkd.suite.ablation import Ablation, method_title
from dhkd.suite.render import row_label


@dataclass
class AblationLoo:
    study: str
    stem: str  # tables/<stem>.md|.csv|.tex
    result: loo.LooResult
    labels: dict[str, str]  # row key -> label
    default: str | None  # the baseline row's key
    baseline: loo.Baseline | None  # the kNN reference per category
    provenance: list[dict[str, Any]]

    @property
    def kept_default(self) -> int:
        """How many held-out categories chose the default row."""
        return sum(h.chosen == self.default for h in self.result.held_out)

    def summary(self) -> str:
        """One sentence: how many held-out categories kept the default, which chose what
        else, and the estimate beside the in-sample choice."""
        res, n = self.result, len(self.result.held_out)
        default = self.labels.get(self.default or "", "the default").removesuffix(" (default)")
        others = [
            f"{h.category} chose {self.labels.get(h.chosen, h.chosen)}"
            for h in res.held_out
            if h.chosen is not None and h.chosen != self.default
        ]
        title = loo.metric_title(res.metric)
        text = f"Leave-one-category-out on the test {title}: {self.kept_default} of {n} "
        text += f"held-out categories chose the default ({default})"
        text += f"; {', '.join(others)}." if others else "."
        est, ins = res.estimate.get(res.metric), res.in_sample_values.get(res.metric)
        if est is not None and ins is not None:
            text += f" Held-out score {100 * est:.1f}, the in-sample choice's {100 * ins:.1f}."
        return text


@dataclass
class Reference:
    """The comparison study's reference column: the held-out tables' baseline."""

    study: str
    column: Column
    baseline: loo.Baseline


def reference_of(compare: StudyData | None) -> Reference | None:
    """The reference column of the comparison study, category -> metric (None without one)."""
    if compare is None:
        return None
    ref = next((c for c in columns(compare) if c.key == REFERENCE and c.trial is not None), None)
    if ref is None:
        return None
    label = method_title(ref.trial.params.get("method", "knn"))
    values = numbers(ref.trial, compare.categories, list(METRICS))
    return Reference(compare.name, ref, loo.Baseline(REFERENCE, label, values))


def ablation_loo(
    ablation: Ablation, reference: Reference | None, notes: list[str]
) -> AblationLoo | None:
    """The held-out table of one ablation; None (with a line in `notes` when the rows lack
    numbers) under 3 categories or 2 rows with a COMPLETE trial."""
    rows = [r for r in ablation.rows if r.column.trial is not None]
    if len(ablation.categories) < 3 or len(rows) < 2:
        return None
    values = {r.key: numbers(r.column.trial, ablation.categories, list(METRICS)) for r in rows}
    try:
        result = loo.leave_one_out(loo.with_mean_of_metrics(values), loo.MEAN_OF_METRICS)
    except DhkdError as exc:
        notes.append(f"No leave-one-category-out table for {ablation.study}: {exc}")
        return None
    stem = f"loo_{ablation.study}"
    by_key = {r.key: r for r in rows}
    provenance = []
    for held in result.held_out:
        if held.chosen is None:
            continue
        row = by_key[held.chosen]
        for entry in number_rows(row.column, held.category, METRICS, table=stem):
            provenance.append({**entry, "study": row.data.name, "note": row.source})
        if reference is not None:
            prefix = f"{REFERENCE} "
            for entry in number_rows(reference.column, held.category, METRICS, prefix, stem):
                provenance.append({**entry, "study": reference.study})
    base = ablation.baseline
    return AblationLoo(
        ablation.study,
        stem,
        result,
        {r.key: row_label(r) for r in ablation.rows},
        base.key if base else None,
        reference.baseline if reference else None,
        provenance,
    )


def write(held: AblationLoo, folder: Path, layout: str) -> None:
    """tables/<stem>.md|.csv|.tex."""
    title = f"Leave-one-category-out — ablation `{held.study}`"
    write_loo_tables(held.result, held.labels, held.baseline, held.study, folder, held.stem,
                     title, layout)  # fmt: skip
