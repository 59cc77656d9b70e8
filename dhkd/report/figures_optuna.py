"""Search figures from an optuna.Study (optuna_study.optuna_study), drawn with the matplotlib
object API: parameter importances (optuna.importance.get_param_importances, whose default
evaluator in Optuna 5 is PED-ANOVA), the optimisation history with the learning curves the
scheduler saw, and parallel coordinates of every final trial.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dhkd.report.figures import new_figure

NA = -0.12  # where a parameter that was not suggested (conditional) sits on its axis


def importances(study) -> dict[str, float]:
    """PED-ANOVA importances (normalised); raises ValueError when they cannot be computed."""
    import optuna

    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        raise ValueError(f"{len(complete)} COMPLETE trials; importances need at least 2")
    varying = {k for t in complete for k in t.params}
    if not varying:
        raise ValueError("no searched parameter")
    try:
        return optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, ZeroDivisionError) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None


def importance_figure(name: str, values: dict[str, float], n_complete: int):
    items = sorted(values.items(), key=lambda kv: kv[1])
    fig = new_figure(7.0, 0.45 * len(items) + 1.6)
    ax = fig.subplots()
    bars = ax.barh([k for k, _ in items], [v for _, v in items], color="tab:blue")
    ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
    ax.set_xlim(0, max(1e-9, max(v for _, v in items)) * 1.2)
    ax.set_xlabel("importance (PED-ANOVA, normalised)")
    caution = " - few trials, indicative only" if n_complete < 10 else ""
    ax.set_title(
        f"{name}: importances for the objective\n({n_complete} COMPLETE trials{caution})",
        fontsize=10,
    )
    return fig


def history_figure(study, metric: str):
    """Left: objective per trial with the best so far. Right: intermediate values per epoch."""
    from optuna.trial import TrialState

    fig = new_figure(11.0, 3.9)
    ax, ax2 = fig.subplots(1, 2)
    trials = study.get_trials(deepcopy=False)
    maximize = study.direction.name == "MAXIMIZE"
    best, best_x, best_y = None, [], []
    for t in trials:
        n = t.user_attrs.get("number", t.number)
        if t.state == TrialState.COMPLETE:
            ax.scatter(n, t.value, color="tab:blue", s=22, zorder=3)
            if best is None or (t.value > best if maximize else t.value < best):
                best = t.value
        elif t.state == TrialState.PRUNED and t.intermediate_values:
            last = t.intermediate_values[max(t.intermediate_values)]
            ax.scatter(n, last, marker="x", color="0.5", s=22, zorder=2)
        if best is not None:
            best_x.append(n)
            best_y.append(best)
        steps = sorted(t.intermediate_values)
        if steps:
            done = t.state == TrialState.COMPLETE
            ax2.plot(
                steps,
                [t.intermediate_values[s] for s in steps],
                marker=".",
                color="tab:blue" if done else "0.6",
                alpha=0.8 if done else 0.6,
                lw=1.2 if done else 0.8,
            )
    ax.step(best_x, best_y, where="post", color="tab:red", label="best so far")
    ax.scatter([], [], color="tab:blue", s=22, label="COMPLETE")
    ax.scatter([], [], marker="x", color="0.5", s=22, label="PRUNED (last value)")
    ax.set_xlabel("trial number")
    ax.set_ylabel(f"objective ({metric}, mean over categories)")
    ax.legend(fontsize=8)
    ax.set_title("optimisation history")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("objective at evaluation")
    ax2.set_title("learning curves (blue: COMPLETE, grey: stopped)")
    from matplotlib.ticker import MaxNLocator

    for a in (ax, ax2):
        a.grid(alpha=0.3)
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def _axis(key: str, param: dict[str, Any]):
    """(map value -> [0, 1], tick positions, tick labels) for one parameter axis."""
    kind = param.get("type")
    if kind == "categorical":
        vals = list(param["values"])
        n = max(1, len(vals) - 1)
        index = {repr(v): i / n if len(vals) > 1 else 0.5 for i, v in enumerate(vals)}
        return (lambda v: index.get(repr(v), np.nan)), list(index.values()), [str(v) for v in vals]
    low, high = float(param["low"]), float(param["high"])
    if param.get("log"):
        a, b = math.log(low), math.log(high)
        fn = lambda v: (math.log(v) - a) / (b - a)  # noqa: E731
        mid = math.exp((a + b) / 2)
    else:
        fn = lambda v: (v - low) / (high - low)  # noqa: E731
        mid = (low + high) / 2
    return fn, [0.0, 0.5, 1.0], [f"{low:g}", f"{mid:.3g}", f"{high:g}"]


def parallel_figure(name: str, study, spec_space: dict[str, dict[str, Any]], metric: str):
    """Parallel coordinates: one axis per searched parameter and the objective; a line per
    trial, coloured by the objective (COMPLETE) or grey dashed (PRUNED)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from optuna.trial import TrialState

    trials = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    ]
    keys = [k for k in spec_space if any(k in t.params for t in trials)]
    axes_fn = [_axis(k, spec_space[k]) for k in keys]
    done = [t.value for t in trials if t.state == TrialState.COMPLETE]
    lo, hi = (min(done), max(done)) if done else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1e-6
    norm, cmap = Normalize(lo, hi), colormaps["viridis"]
    fig = new_figure(1.7 * (len(keys) + 1) + 2.0, 4.6)
    ax = fig.subplots()
    for t in sorted(trials, key=lambda t: (t.state == TrialState.COMPLETE, t.value or 0)):
        ys = [
            fn(t.params[k]) if k in t.params else NA
            for k, (fn, _, _) in zip(keys, axes_fn, strict=True)
        ]
        if t.state == TrialState.COMPLETE:
            ax.plot(
                range(len(keys) + 1),
                [*ys, norm(t.value)],
                color=cmap(norm(t.value)),
                lw=1.6,
                alpha=0.9,
                zorder=3,
            )
        else:
            ax.plot(range(len(keys)), ys, color="0.65", lw=0.9, ls="--", alpha=0.7, zorder=2)
    for i, (_, ticks, labels) in enumerate(axes_fn):
        ax.axvline(i, color="0.2", lw=0.8)
        for y, text in zip(ticks, labels, strict=True):
            ax.text(
                i + 0.03,
                y,
                text,
                fontsize=7,
                va="center",
                ha="left",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 0.5},
            )
        ax.text(i + 0.03, NA, "n/a", fontsize=7, va="center", color="0.4")
    ax.axvline(len(keys), color="0.2", lw=0.8)
    for y, value in ((0.0, lo), (1.0, hi)):  # the objective axis spans the observed range
        ax.text(len(keys) + 0.03, y, f"{value:.6g}", fontsize=7, va="center", ha="left")
    ax.set_xticks(range(len(keys) + 1), [*keys, f"objective\n({metric})"], fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(NA - 0.08, 1.08)
    ax.set_xlim(-0.2, len(keys) + 0.5)
    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label=f"objective ({metric})", pad=0.01)
    ax.set_title(f"{name}: parallel coordinates (grey dashed: stopped early)")
    return fig
