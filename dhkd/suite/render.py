r"""An ablation table (ablation.Ablation) as Markdown, CSV and LaTeX.

Rows: the settings, the baseline first where it was borrowed, marked "(default)". Columns: the
three test metrics' means over the categories (%, one decimal, ± std over seeds where there
are several), then the validation objective that chose each row's trial. Beside each mean of a
non-baseline row, its difference to the baseline in points; an asterisk where the paired test
(Holm-corrected) gives p < 0.05. The tests themselves are listed in the notes. The LaTeX
follows the per-study tables (dhkd/report/latex.py): booktabs, \resizebox to the line width
(never up), `table` or `table*` by estimated width in the two-column layout.
"""

from __future__ import annotations

import csv
import io
import re

from dhkd.report.collect import METRICS
from dhkd.report.latex import LAYOUTS, latex_escape, notes_fragment
from dhkd.report.tables import TITLES, Cell
from dhkd.suite.ablation import Ablation, Row, delta, findings, seed_counts

SHORT = {"image_auroc": "Image AUROC", "pixel_auroc": "Pixel AUROC", "pixel_aupro": "AU-PRO"}
ALPHA = 0.05


def row_label(row: Row) -> str:
    return f"{row.label} (default)" if row.baseline else row.label


def _significant(ablation: Ablation, row: Row, metric: str) -> bool:
    test = ablation.comparison(row, metric)
    return test is not None and test.p_holm is not None and test.p_holm < ALPHA


def cell_text(ablation: Ablation, row: Row, metric: str) -> str:
    cell = ablation.cells[(row.key, metric)]
    if cell.value is None:
        return "–"
    text = f"{cell.value:.1f}"
    if cell.std is not None:
        text += f" ± {cell.std:.1f}"
    d = delta(ablation, row, metric)
    if d is not None:
        text += f" ({d:+.1f}{'*' if _significant(ablation, row, metric) else ''})"
    return text


def _value(cell: Cell) -> str:
    return "–" if cell.value is None else f"{cell.value:.1f}"


def objective_title(ablation: Ablation) -> str:
    return f"Val. {SHORT.get(ablation.objective, ablation.objective)}"


def to_markdown(ablation: Ablation) -> str:
    head = ["Setting", *(SHORT[m] for m in METRICS), objective_title(ablation)]
    lines = ["| " + " | ".join(head) + " |", "|:--|" + "--:|" * (len(head) - 1)]
    for row in ablation.rows:
        cells = [cell_text(ablation, row, m) for m in METRICS]
        cells.append(_value(ablation.validation[row.key]))
        lines.append("| " + " | ".join([row_label(row), *cells]) + " |")
    return "\n".join(lines) + "\n"


def to_csv(ablation: Ablation) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        [
            "setting",
            "baseline",
            "metric",
            "mean",
            "std",
            "seeds",
            "delta",
            "p",
            "p_holm",
            "pairs",
            "run_id",
            "study",
        ]
    )
    for row in ablation.rows:
        for metric in METRICS:
            cell = ablation.cells[(row.key, metric)]
            test = ablation.comparison(row, metric)
            d = delta(ablation, row, metric)
            writer.writerow(
                [
                    row.label,
                    int(row.baseline),
                    metric,
                    "" if cell.value is None else f"{cell.value:.4f}",
                    "" if cell.std is None else f"{cell.std:.4f}",
                    cell.n,
                    "" if d is None else f"{d:.4f}",
                    "" if test is None or test.p is None else f"{test.p:.4g}",
                    "" if test is None or test.p_holm is None else f"{test.p_holm:.4g}",
                    "" if test is None else test.n_pairs,
                    cell.run_id or "",
                    row.data.name,
                ]
            )
    return buf.getvalue()


def notes(ablation: Ablation) -> list[str]:
    """The long notes: where each row's trial comes from, the tests, what the table says."""
    out = ["Rows:"]
    for row in ablation.rows:
        trial = row.column.trial
        where = f" ({row.source})" if row.source else ""
        if trial is None:
            out.append(f"  {row_label(row)}: no COMPLETE trial")
        else:
            out.append(
                f"  {row_label(row)}: trial #{trial.number}{where}, MLflow run {trial.run_id}"
            )
    out += ablation.notes
    out.append(
        "Paired tests against the baseline row: Wilcoxon signed-rank, two-sided, over the "
        "(category, seed) units both rows evaluated, Holm-corrected over the rows per metric:"
    )
    for metric in METRICS:
        out += [f"  {TITLES[metric]}: {c.text()}" for c in ablation.tests.get(metric, [])]
    out.append("What the table says:")
    out += [f"  {line}" for line in findings(ablation)]
    return out


def label(ablation: Ablation) -> str:
    return re.sub(r"[^A-Za-z0-9:.-]+", "-", f"tab:ablation-{ablation.study}")


def caption(ablation: Ablation) -> str:
    counts = seed_counts(ablation)
    n = len(ablation.categories)
    seeds = "one seed" if counts in ([], [1]) else f"mean $\\pm$ std over {counts[-1]} seeds"
    obj = SHORT.get(ablation.objective, ablation.objective)
    text = (
        f"Ablation: {latex_escape(ablation.question)} (study "
        f"\\texttt{{{latex_escape(ablation.study)}}}). Test metrics (\\%) averaged over "
        f"{n} categor{'y' if n == 1 else 'ies'}, {seeds}; in brackets the difference to the "
        f"default row in points"
    )
    if any(c.p is not None for cs in ablation.tests.values() for c in cs):
        text += f", * paired Wilcoxon test p$<${ALPHA:g} (Holm)"
    else:
        text += f" (no paired test: {ablation.pairs} pairs per row, 6 needed)"
    return text + f". Each row: its best trial by validation {latex_escape(obj)}."


def _latex_cell(ablation: Ablation, row: Row, metric: str, layout: str) -> str:
    cell = ablation.cells[(row.key, metric)]
    if cell.value is None:
        return "--"
    text = f"{cell.value:.1f}"
    if cell.std is not None and layout != "compact":
        text += rf"\,{{\scriptsize$\pm${cell.std:.1f}}}"
    d = delta(ablation, row, metric)
    if d is not None:
        star = "*" if _significant(ablation, row, metric) else ""
        sign = "$-$" if d < 0 else "+"
        text += rf"\,{{\scriptsize({sign}{abs(d):.1f}{star})}}"
    return text


def to_latex(ablation: Ablation, layout: str = "twocolumn") -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown LaTeX layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    size = r"\footnotesize" if layout == "compact" else r"\small"
    env = "table*" if layout == "twocolumn" else "table"  # five columns of mean, std and delta
    heads = [*(SHORT[m] for m in METRICS), objective_title(ablation)]
    out = [
        rf"\begin{{{env}}}[t]",
        r"\centering",
        size,
        rf"\caption{{{caption(ablation)}}}",
        rf"\label{{{label(ablation)}}}",
        r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
        rf"\begin{{tabular}}{{@{{}}l{'c' * len(heads)}@{{}}}}",
        r"\toprule",
        "Setting & " + " & ".join(latex_escape(h) for h in heads) + r" \\",
        r"\midrule",
    ]
    for row in ablation.rows:
        cells = [_latex_cell(ablation, row, m, layout) for m in METRICS]
        cells.append(_value(ablation.validation[row.key]).replace("–", "--"))
        name = latex_escape(row.label) + (r" \emph{(default)}" if row.baseline else "")
        out.append(name + " & " + " & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", "}", rf"\end{{{env}}}"]
    return "\n".join(out) + "\n"


def notes_latex(ablation: Ablation) -> str:
    heading = (
        rf"\paragraph{{Notes to Table~\ref{{{label(ablation)}}}}} (study "
        rf"\texttt{{{latex_escape(ablation.study)}}})."
    )
    return notes_fragment(heading, notes(ablation))
