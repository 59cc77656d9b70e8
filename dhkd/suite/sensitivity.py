"""The sensitivity figure of a suite: each test metric against each numeric ablation parameter
(noise sigma, affinity weight, flow depth, ...), as the change from the default setting in
points: one thin line per category, the mean over categories thick with its seed spread, the
default marked (categories far apart in level would otherwise flatten every line).

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
    """Each row's value minus the default row's, in points: a line per category, the mean
    over categories thick (error bars: the row's std over seeds); the settings evenly spaced."""
    key = ablation.keys[0]
    rows = sorted(ablation.rows, key=lambda r: r.column.assignment[key])
    xs = list(range(len(rows)))
    base = ablation.baseline
    for category in ablation.categories:
        ref = measured_cell(base.data, base.column, category, metric).value if base else None
        ys = [measured_cell(r.data, r.column, category, metric).value for r in rows]
        ys = [np.nan if y is None or ref is None else y - ref for y in ys]
        ax.plot(
            xs, ys, marker="o", ms=3, lw=1.0, alpha=0.75, color=colors[category], label=category
        )
    ref = ablation.cells[(base.key, metric)].value if base else None
    cells = [ablation.cells[(r.key, metric)] for r in rows]
    ys = [np.nan if c.value is None or ref is None else c.value - ref for c in cells]
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
    ax.axhline(0.0, color="0.5", lw=0.8)
    if base is not None:
        ax.axvline(rows.index(base), color="0.5", ls=":", lw=1.2, label="default")
    ax.set_xticks(xs, [f"{r.column.assignment[key]:g}" for r in rows])
    ax.margins(x=0.08)
    low, high = ax.get_ylim()  # at least +-0.5 points: a flat line should look flat
    ax.set_ylim(min(low, -0.5), max(high, 0.5))
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
                ax.set_ylabel("test − default, points")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)
    F.fitted_suptitle(fig, title, 11)
    return fig
