"""Which trial each table column shows.

Ablation (the spec has categorical scientific parameters): one column per combination of their
values, in the spec's order, showing the best COMPLETE trial of that combination by the study
objective (its nuisance parameters were tuned by the search). Search (no categorical scientific
parameter): one column, the best trial. Continuous scientific parameters are not grouped; the
parameter figures show them against the metric instead. The objective is the validation metric
of the study's selection protocol (`objective/<metric>`); test numbers never choose. A study with
a `reference:` gets a last column, its reference run.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any

from dhkd.methods.registry import short_labels
from dhkd.report.collect import StudyData, Trial

REFERENCE = "reference"  # the key of the reference column (the spec's `reference:` method)


@dataclass
class Column:
    key: str  # stable id, e.g. "noise.sigma=0.2"
    label: str  # shown in tables, e.g. "σ 0.2"
    assignment: dict[str, Any]  # scientific key -> value ({} for a search)
    trial: Trial | None  # best COMPLETE trial; None when the group has none
    n_complete: int
    n_trials: int
    compute: dict[str, float] = field(default_factory=dict)  # compute_hours of its trials


def compute_hours(trials: list[Trial]) -> dict[str, float]:
    """GPU, CPU and trial (wall) hours of trials, summed from their `cost/*_s` metrics (every
    trial that ran counts, pruned and failed ones too)."""
    return {
        kind: sum(t.metrics.get(f"cost/{kind}_s", 0.0) for t in trials) / 3600
        for kind in ("gpu", "cpu", "wall")
    }


def param_text(value: str) -> str:
    """An MLflow param value (JSON for non-strings) as MLflow stores it."""
    return value if isinstance(value, str) else json.dumps(value)


def matches(raw: str | None, value: Any) -> bool:
    """Whether the MLflow param string `raw` stands for the spec value `value`."""
    if raw is None:
        return False
    if raw == param_text(value) or raw == str(value):
        return True
    if isinstance(value, bool) or raw.lower() in ("true", "false"):
        return raw.lower() == str(value).lower()
    try:
        return math.isclose(float(raw), float(value), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


def parse_value(raw: str, param: dict[str, Any]) -> Any:
    """An MLflow param string as the typed value of a spec parameter; ValueError if it is not
    one of the parameter's values / not a number."""
    kind = param.get("type")
    if kind == "categorical":
        for value in param["values"]:
            if matches(raw, value):
                return value
        raise ValueError(f"{raw!r} is not among {param['values']}")
    if kind == "int":
        return int(float(raw))
    return float(raw)


def grouping_keys(spec: dict[str, Any]) -> list[str]:
    """Categorical scientific parameters (the ablation's columns)."""
    return [k for k, p in (spec.get("scientific") or {}).items() if p.get("type") == "categorical"]


def value_label(key: str, value: Any) -> str:
    name = short_labels().get(key, key.rsplit(".", 1)[-1])
    text = value if isinstance(value, str) else json.dumps(value)
    return f"{name} {text}"


def best_trial(data: StudyData, trials: list[Trial]) -> Trial | None:
    scored = [(data.objective_value(t), t) for t in trials if t.state == "COMPLETE"]
    scored = [(v, t) for v, t in scored if v is not None and math.isfinite(v)]
    if not scored:
        return None
    sign = 1.0 if data.objective[1] == "max" else -1.0
    return max(scored, key=lambda vt: (sign * vt[0], -vt[1].number))[1]


def columns(data: StudyData) -> list[Column]:
    """The measured columns of every table (see the module docstring), and last the study's
    reference (measured once, dhkd.study.driver.reference) when it has one."""
    out = _variant_columns(data)
    if data.reference is not None:
        method = data.reference.params.get("method", "reference")
        out.append(
            Column(REFERENCE, f"{method} (reference)", {}, data.reference, 1, 1,
                   compute_hours([data.reference]))
        )  # fmt: skip
    return out


def _variant_columns(data: StudyData) -> list[Column]:
    keys = grouping_keys(data.spec)
    if not keys:
        best = best_trial(data, data.trials)
        label = f"best trial #{best.number}" if best else "best trial"
        return [
            Column("best", label, {}, best, len(data.complete), len(data.trials),
                   compute_hours(data.trials))
        ]  # fmt: skip
    scientific = data.spec["scientific"]
    out = []
    for combo in itertools.product(*(scientific[k]["values"] for k in keys)):
        assignment = dict(zip(keys, combo, strict=True))
        members = [
            t
            for t in data.trials
            if all(matches(t.params.get(k), v) for k, v in assignment.items())
        ]
        key = ",".join(f"{k}={param_text(v)}" for k, v in assignment.items())
        label = ", ".join(value_label(k, v) for k, v in assignment.items())
        complete = sum(t.state == "COMPLETE" for t in members)
        out.append(
            Column(
                key,
                label,
                assignment,
                best_trial(data, members),
                complete,
                len(members),
                compute_hours(members),
            )
        )
    return out
