"""The sensitivity figure of a suite: each test metric against each numeric ablation parameter
(noise sigma, affinity weight, flow depth, ...), one thin line per category, the mean over
categories thick with its seed spread, the default value marked.

A panel row per ablation whose one scientific parameter takes numbers (its borrowed default row
included), a column per metric. The points are the ablation rows' trials (ablation.py), so the
figure shows the tables' numbers per category; `points` gives every one with its MLflow run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dhkd.report import figures as F
from dhkd.report.collect import METRICS
from dhkd.report.tables import TITLES, measured_cell
from dhkd.suite.ablation import Ablation


def numeric(ablation: Ablation) -> bool:
    if len(ablation.keys) != 1:
        return False
    values = [r.column.assignment.get(ablation.keys[0]) for r in ablation.rows]
    return len(values) >= 2 and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    )


def points(ablation: Ablation) -> list[dict[str, Any]]:
    """(value, category, metric, percent, run id, metric key) of every point, sorted by value."""
    key = ablation.keys[0]
    out = []
    for row in sorted(ablation.rows, key=lambda r: r.column.assignment[key]):
        for category in ablation.categories:
            for metric in METRICS:
                cell = measured_cell(row.data, row.column, category, metric)
                out.append(
                    {
                        "table": "figure:sensitivity",
                        "row": category,
                        "column": f"{key}={row.column.assignment[key]}",
                        "quantity": metric,
                        "value": None if cell.value is None else round(cell.value, 4),
                        "study": row.data.name,
                        "run_id": cell.run_id,
                        "metric_key": cell.metric_key,
                        "mlflow_value": cell.raw,
                    }
                )
    return out


def _panel(ax, ablation: Ablation, metric: str, colors: dict) -> None:
    key = ablation.keys[0]
    rows = sorted(ablation.rows, key=lambda r: r.column.assignment[key])
    xs = [float(r.column.assignment[key]) for r in rows]
    for category in ablation.categories:
        ys = [measured_cell(r.data, r.column, category, metric).value for r in rows]
        ys = [np.nan if y is None else y for y in ys]
        ax.plot(
            xs, ys, marker="o", ms=3, lw=1.0, alpha=0.75, color=colors[category], label=category
        )
    cells = [ablation.cells[(r.key, metric)] for r in rows]
    ys = [np.nan if c.value is None else c.value for c in cells]
    err = [0.0 if c.std is None else c.std for c in cells]
    ax.errorbar(
        xs,
        ys,
        yerr=err,
        marker="o",
        ms=5,
        lw=2.4,
        capsize=3,
        color="black",
        zorder=3,
        label="mean over categories",
    )
    base = ablation.baseline
    if base is not None:
        ax.axvline(float(base.column.assignment[key]), color="0.5", ls=":", lw=1.2, label="default")
    F._set_xscale(ax, xs)
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.minorticks_off()
    ax.margins(x=0.08)
    F.tidy_percent_axis(ax)
    ax.grid(alpha=0.3)


def sensitivity_figure(ablations: list[Ablation], title: str):
    """The figure (see the module docstring); None when no ablation has a numeric parameter."""
    chosen = [a for a in ablations if numeric(a)]
    if not chosen:
        return None
    categories = list(dict.fromkeys(c for a in chosen for c in a.categories))
    colors = F.category_colors(categories)
    fig = F.new_figure(3.3 * len(METRICS) + 1.8, 2.6 * len(chosen) + 0.6)
    axes = fig.subplots(len(chosen), len(METRICS), squeeze=False)
    for i, ablation in enumerate(chosen):
        for j, metric in enumerate(METRICS):
            ax = axes[i][j]
            _panel(ax, ablation, metric, colors)
            if i == 0:
                ax.set_title(TITLES[metric])
            ax.set_xlabel(ablation.keys[0])
            if j == 0:
                ax.set_ylabel("test, %")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)
    F.fitted_suptitle(fig, title, 11)
    return fig
