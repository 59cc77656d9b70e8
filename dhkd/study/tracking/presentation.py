"""How a study reads in the MLflow UI (3.17): where it opens, what the runs table shows, and the
descriptions of the study run and of each trial run.

- The experiment is tagged `mlflow.experimentKind = custom_model_development` (what the UI
  writes when a user calls an experiment "Machine learning"). MLflow 3.17's UI with its
  GenAI / Model training switch decides the landing page from that switch instead (kept in the
  browser, GenAI unless changed), so every URL dhkd prints or links carries
  `workflowType=machine_learning`: it opens the runs table, not the GenAI overview.
- A shared view (experiment tag `mlflow.sharedViewState.<key>`, opened by the URL parameter
  `viewStateShareKey`) shows the description, the state, the objective, the test metric and the
  searched parameters as columns, sorted by the objective and grouped by role, so the study run
  and every trial are visible without expanding anything.
- The experiment names the objective as its primary metric; the chart view shows each trial
  (not the role groups' aggregates), in sections by key prefix (val/, test/, train/, ...).
- Run descriptions are MLflow notes (tag `mlflow.note.content`, Markdown).
"""

from __future__ import annotations

import json
import re
from typing import Any

from dhkd.data.selection import protocol_label
from dhkd.study.design.spec import StudySpec
from dhkd.study.state.outcome import COMPLETE, PRUNED, objective_key

NOTE = "mlflow.note.content"
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
PRIMARY_METRIC = "mlflow.experiment.primaryMetric.name"
VIEW_KEY = "dhkd-runs"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
WORKFLOW = "workflowType=machine_learning"


def runs_route(experiment_id: str) -> str:
    """The UI route (after the host) of a study's runs table, in dhkd's view."""
    return f"#/experiments/{experiment_id}/runs?{WORKFLOW}&viewStateShareKey={VIEW_KEY}"


def run_route(experiment_id: str, run_id: str) -> str:
    return f"#/experiments/{experiment_id}/runs/{run_id}?{WORKFLOW}"


def objective_name(spec: StudySpec) -> str:
    return objective_key(spec.objective.metric)


def _col(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"


def runs_view(spec: StudySpec) -> dict[str, Any]:
    """The shared view of the runs table (search facets + UI state, as the UI stores them)."""
    columns = [
        _col("attributes", "Description"),
        _col("tags", "state"),
        _col("metrics", objective_name(spec)),
        _col("metrics", f"test/{spec.objective.metric}"),
    ]
    columns += [_col("params", key) for key in spec.space]
    return {
        "searchFilter": "",
        "orderByKey": _col("metrics", objective_name(spec)),
        "orderByAsc": spec.objective.mode == "min",
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": columns,
        "groupBy": {
            "aggregateFunction": spec.objective.mode,
            "groupByKeys": [{"mode": "tag", "groupByData": "dhkd.role"}],
        },
        "useGroupedValuesInCharts": False,
    }


def experiment_tags(spec: StudySpec) -> dict[str, str]:
    return {
        "dhkd.study": spec.name,
        EXPERIMENT_KIND[0]: EXPERIMENT_KIND[1],
        PRIMARY_METRIC: objective_name(spec),
        VIEW_TAG: json.dumps(runs_view(spec)),
        NOTE: f"dhkd study **{spec.name}**: {spec.description.strip()}",
    }


def _param_text(key: str, param) -> str:
    tree = param.model_dump(exclude_none=True)
    if "values" in tree:
        return f"`{key}` in {tree['values']}"
    scale = ", log scale" if tree.get("log") else ""
    return f"`{key}` from {tree.get('low')} to {tree.get('high')}{scale}"


def protocol_lines(spec: StudySpec) -> list[str]:
    """How trials are scored, stopped and chosen, in the words of the spec."""
    metric, mode = spec.objective.metric, spec.objective.mode
    lines = [
        f"- **Objective**: {mode} `{objective_name(spec)}`, the mean over categories "
        f"({', '.join(spec.data.category_names)}) of the validation {metric} "
        f"(`val/<category>/{metric}`), each a mean over seeds {spec.seeds}",
        f"- **Selection protocol** `{spec.selection.protocol}`: "
        f"{protocol_label(spec.selection.protocol)}; test metrics are `test/...`",
    ]
    if spec.scheduler.type == "asha":
        lines.append(
            f"- **Early stopping**: ASHA compares trials on the objective at its evaluation "
            f"epochs (grace period: {spec.scheduler.grace_period} epoch(s), reduction factor "
            f"{spec.scheduler.reduction_factor:g}); a trial it stops is PRUNED"
        )
    lines.append(
        f"- **Selection**: the best COMPLETE trial by the objective; `dhkd report {spec.name}` "
        "takes the best trial of each scientific value"
    )
    return lines


def study_note(spec: StudySpec, outcome: str = "") -> str:
    """The study run's description; `outcome`: counts and the best-trial line (Markdown)."""
    sci = "; ".join(_param_text(k, p) for k, p in spec.scientific.items()) or "none (a search)"
    nuis = "; ".join(_param_text(k, p) for k, p in spec.nuisance.items()) or "none"
    fixed = ", ".join(f"`{k}`={v}" for k, v in spec.fixed.items()) or "none"
    lines = [
        spec.description.strip(),
        "",
        f"- **Scientific parameters**: {sci}",
        f"- **Nuisance parameters** (tuned for each scientific value): {nuis}",
        f"- **Fixed**: {fixed}; method `{spec.method}`, preset `{spec.preset}`, "
        f"{spec.trials} trials, sampler {spec.sampler.type}",
        *protocol_lines(spec),
    ]
    if outcome:
        lines += ["", outcome]
    return "\n".join(lines)


def best_line(spec: StudySpec, best: dict[str, Any] | None) -> str:
    """The study note's line naming the best trial; `{best}` becomes a link to its run when
    the operation is applied (tracking_ops)."""
    if best is None:
        return "**Best trial**: none (no COMPLETE trial yet)"
    params = ", ".join(f"`{k}`={v}" for k, v in best["params"].items()) or "fixed parameters only"
    return f"**Best trial**: {{best}}, {objective_name(spec)} = {best['value']:.4f}, with {params}"


def trial_note(
    spec: StudySpec,
    number: int,
    params: dict[str, Any],
    state: str | None = None,
    *,
    epoch: int | None = None,
    value: float | None = None,
    stopped_by: str = "",
    error: str = "",
) -> str:
    """A trial run's description: how it ended (the first line, which the runs table shows;
    plain text), then what it tried. state None: running. `stopped_by` names what pruned it
    ("ASHA", "the time budget"); `error`: its error text."""
    at = f" at epoch {epoch}" if epoch is not None else ""
    shown = f"{objective_name(spec)} = {value:.4f}" if value is not None else ""
    if state is None:
        end = "RUNNING"
    elif state == COMPLETE:
        end = f"COMPLETE{at}" + (f": {shown}" if shown else "")
    elif state == PRUNED:
        by = f" by {stopped_by}" if stopped_by else ""
        last = f"; last evaluation {shown}" if shown else ""
        end = f"PRUNED{by}{at} (stopped early by the scheduler, not a failure){last}"
    else:
        end = f"{state}{at}" + (f": {error_line(error)}" if error else "")
    tried = ", ".join(f"`{k}`={v}" for k, v in params.items()) or "the fixed parameters only"
    return f"{end}\n\nTrial #{number} of study `{spec.name}` tried {tried}."


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\w*(\(.*\))?:")


def error_line(text: str) -> str:
    """The first line of a trial's error: its (last) exception line, else its last line."""
    lines = [ln.rstrip() for ln in text.strip().splitlines() if ln.strip()]
    found = [ln for ln in lines if EXCEPTION_LINE.match(ln)]
    line = found[-1] if found else (lines[-1].strip() if lines else "no error message")
    return line[:300]
