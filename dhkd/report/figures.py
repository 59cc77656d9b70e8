"""Result figures (matplotlib object API only: Figure + FigureCanvasAgg, no pyplot state).

- parameter_figure: each metric vs one scientific parameter, per category (thin lines) and
  averaged (thick), error bars = seed std; grey dots = every COMPLETE trial's average (the
  spread the tuned nuisance parameters leave).
- bars_figure: the table's columns side by side per category, error bars = seed std.
- qualitative_figure: the best trial's anomaly-map grids (maps_<category>_s<seed>.png).
Each figure is written as PNG and PDF by `save`.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dhkd.report.collect import StudyData
from dhkd.report.select import Column, parse_value
from dhkd.report.tables import AVERAGE, Table

DPI = 130


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, out: Path, name: str, dpi: int = DPI) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=dpi)
    return paths


def category_colors(categories: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab20" if len(categories) > 10 else "tab10"]
    return {c: cmap(i % cmap.N) for i, c in enumerate(categories)}


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def tidy_percent_axis(ax, min_span: float = 2.0) -> None:
    """Show at least `min_span` percentage points (flat lines look flat, not like a trend)
    and never run past 100.5 %."""
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    lo, hi = ax.dataLim.y0, ax.dataLim.y1
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi < lo:
        return
    center, half = (lo + hi) / 2, max(hi - lo, min_span) * 0.55
    lo, hi = center - half, center + half
    if hi > 100.3:
        lo, hi = lo - (hi - 100.3), 100.3
    ax.set_ylim(max(lo, 0.0), hi)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10]))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.1f"))


def _set_xscale(ax, xs: list[float]) -> None:
    positive = [x for x in xs if x > 0]
    if len(positive) >= 2 and max(positive) / min(positive) > 30:
        if min(xs) <= 0:
            ax.set_xscale("symlog", linthresh=min(positive))
        else:
            ax.set_xscale("log")


def _best_column_per_value(data: StudyData, cols: list[Column], key: str, value: Any):
    """The column with scientific `key` = `value` whose trial has the best objective."""
    members = [c for c in cols if c.trial is not None and c.assignment.get(key, object()) == value]
    if not members:
        return None
    sign = 1.0 if data.objective[1] == "max" else -1.0
    return max(members, key=lambda c: sign * (data.objective_value(c.trial) or -np.inf))


def _trial_points(data: StudyData, key: str, row: str, metric: str) -> tuple[list, list]:
    """(parameter value, metric in %) of every COMPLETE trial; row = category or AVERAGE."""
    param = (data.spec.get("scientific") or {})[key]
    metric_key = f"test/{metric}" if row == AVERAGE else f"test/{row}/{metric}"
    xs, ys = [], []
    for t in data.complete:
        raw, y = t.params.get(key), t.metric(metric_key)
        if raw is None or y is None:
            continue
        try:
            xs.append(parse_value(raw, param))
        except ValueError:
            continue
        ys.append(100.0 * y)
    return xs, ys


def _categorical_panel(ax, data, table: Table, cols, key: str, values: list, colors) -> None:
    """Best trial per value: a line per category, the average in black, grey dots = all."""
    numeric = _numeric(values)
    pos = {repr(v): (float(v) if numeric else float(i)) for i, v in enumerate(values)}
    xs, ys = _trial_points(data, key, AVERAGE, table.metric)
    xp = [pos.get(repr(x), np.nan) for x in xs]
    ax.scatter(xp, ys, s=14, color="0.6", alpha=0.6, zorder=1, label="every COMPLETE trial (avg)")
    picks = [_best_column_per_value(data, cols, key, v) for v in values]
    x = [pos[repr(v)] for v in values]
    for row in [*data.categories, AVERAGE]:
        cells = [table.cells[(row, c.key)] if c else None for c in picks]
        y = [c.value if c and c.value is not None else np.nan for c in cells]
        err = [c.std if c and c.std is not None else 0.0 for c in cells]
        avg = row == AVERAGE
        style = (
            {"lw": 2.4, "ms": 5, "zorder": 3, "color": "black"}
            if avg
            else {"lw": 1.0, "ms": 3, "zorder": 2, "color": colors[row], "alpha": 0.75}
        )
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=row, **style)
    for xv, pick in zip(x, picks, strict=True):
        if pick is None:  # say so instead of leaving a silent gap
            ax.annotate(
                "no COMPLETE\ntrial",
                (xv, 0.02),
                xycoords=("data", "axes fraction"),
                ha="center",
                va="bottom",
                fontsize=7,
                color="0.45",
            )
    ax.margins(x=0.12)
    if numeric:
        _set_xscale(ax, x)
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.minorticks_off()
    else:
        ax.set_xticks(x, [str(v) for v in values])


def _continuous_panel(ax, data, table: Table, key: str, param: dict, colors) -> None:
    """Every COMPLETE trial at its value: small dots per category, black dots = average."""
    for row in [*data.categories, AVERAGE]:
        xs, ys = _trial_points(data, key, row, table.metric)
        avg = row == AVERAGE
        ax.scatter(
            xs,
            ys,
            s=26 if avg else 10,
            color="black" if avg else colors[row],
            alpha=1.0 if avg else 0.7,
            zorder=3 if avg else 2,
            label=row,
        )
    if param.get("log"):
        ax.set_xscale("log")


def parameter_figure(data: StudyData, tables: dict[str, Table], cols: list[Column], key: str):
    """Metric vs scientific parameter `key`: one panel per metric (see the module docstring)."""
    param = data.spec["scientific"][key]
    colors = category_colors(data.categories)
    fig = new_figure(4.2 * len(tables) + 1.6, 3.8)
    axes = fig.subplots(1, len(tables), squeeze=False)[0]
    categorical = param.get("type") == "categorical"
    for ax, table in zip(axes, tables.values(), strict=True):
        if categorical:
            _categorical_panel(ax, data, table, cols, key, list(param["values"]), colors)
        else:
            _continuous_panel(ax, data, table, key, param, colors)
        ax.set_title(table.title)
        ax.set_xlabel(key)
        ax.set_ylabel("% (mean ± std over seeds)" if categorical else "%")
        tidy_percent_axis(ax)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)
    what = "best trial per value" if categorical else "every COMPLETE trial"
    fig.suptitle(f"{data.name}: metrics vs {key} ({what})", fontsize=11)
    return fig


def bars_figure(data: StudyData, table: Table):
    """Grouped bars: categories (and Average) x measured columns, error bars = seed std."""
    from matplotlib import colormaps
    from matplotlib.patches import Patch

    cols = [c for c in table.columns if c.kind == "measured"]
    rows = table.rows
    fig = new_figure(max(6.0, 0.55 * len(rows) * max(1, len(cols)) ** 0.5 + 3.0), 4.0)
    ax = fig.subplots()
    width = 0.8 / max(1, len(cols))
    palette = colormaps["tab10" if len(cols) <= 10 else "tab20"]
    handles: list = []
    values = []
    for i, col in enumerate(cols):
        cells = [table.cells[(r, col.key)] for r in rows]
        x = np.arange(len(rows)) + (i - (len(cols) - 1) / 2) * width
        have = [j for j, c in enumerate(cells) if c.value is not None]
        label = col.label if have else f"{col.label} (no COMPLETE trial)"
        color = palette(i % palette.N)
        ax.bar(x[have], [cells[j].value for j in have], width * 0.95, color=color)
        handles.append(Patch(facecolor=color, label=label))
        spread = [j for j in have if cells[j].std is not None]
        if spread:
            ax.errorbar(
                x[spread],
                [cells[j].value for j in spread],
                fmt="none",
                ecolor="black",
                yerr=[cells[j].std for j in spread],
                capsize=2,
                lw=0.8,
            )
        for j in sorted(set(range(len(rows))) - set(have)):
            ax.annotate(
                "–",
                (x[j], 0.01),
                xycoords=("data", "axes fraction"),
                ha="center",
                va="bottom",
                fontsize=12,
                color="0.3",
            )
        values += [cells[j].value for j in have]
    ax.set_xticks(
        np.arange(len(rows)),
        rows,
        rotation=30 if len(rows) > 6 else 0,
        ha="right" if len(rows) > 6 else "center",
    )
    if values:
        low = max(0.0, np.floor(min(values) / 5.0) * 5.0 - 5.0)
        ax.set_ylim(low, min(101.0, max(values) + 3.0))
    ax.axvline(len(rows) - 1.5, color="0.5", lw=0.8, ls=":")
    ax.set_ylabel(f"{table.title} (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(
        handles=handles,
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        title="column (– : no value)",
        title_fontsize=8,
    )
    fitted_suptitle(fig, f"{data.name}: {table.title} per category and column", fontsize=12)
    return fig


def qualitative_figure(images: list[Path], title: str):
    """The anomaly-map grids side by side, one panel per category."""
    from matplotlib.image import imread

    n = len(images)
    ncols = min(5, n)
    nrows = int(np.ceil(n / ncols))
    arrays = [imread(p) for p in images]
    aspect = max(a.shape[0] / a.shape[1] for a in arrays)
    fig = new_figure(3.6 * ncols, 3.6 * aspect * nrows + 0.5)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, path, array in zip(axes, images, arrays, strict=False):
        ax.imshow(array)
        ax.set_title(path.stem.removeprefix("maps_"), fontsize=9)
    for ax in axes:
        ax.axis("off")
    fitted_suptitle(fig, title, fontsize=11)
    return fig


def fitted_suptitle(fig: Figure, title: str, fontsize: float):
    """The figure's suptitle, wrapped at word boundaries into as few lines as keep every line
    inside the figure's width (one narrow panel cannot hold a long title on one line)."""
    renderer = fig.canvas.get_renderer()
    room = 0.96 * fig.get_figwidth() * fig.dpi
    for width in range(max(len(title), 10), 9, -1):  # at least once, for a short title
        artist = fig.suptitle("\n".join(textwrap.wrap(title, width)), fontsize=fontsize)
        if artist.get_window_extent(renderer).width <= room:
            break
    return artist
