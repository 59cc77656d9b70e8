"""The end-of-run summary: every trial's state and value, the best configuration, where to look."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dhkd.study.design.spec import StudySpec
from dhkd.study.state.layout import StudyPaths, read_json, write_json

# at the end of a run no trial runs: one still RUNNING in Optuna was interrupted (resumable)
OPTUNA_TO_STATE = {"COMPLETE": "COMPLETE", "PRUNED": "PRUNED", "FAIL": "FAILED",
                   "RUNNING": "INTERRUPTED"}  # fmt: skip


@dataclass
class StudySummary:
    name: str
    complete: bool  # every trial has a final state (or the budget ran out)
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    tracking_uri: str
    experiment: Path
    tracking_pending: int = 0
    tracking_rejected: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    compute: dict[str, Any] = field(default_factory=dict)  # live.study_cost: summed over trials
    startup: dict[str, float] = field(default_factory=dict)  # runner.Phases: seconds per phase

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.trials:
            out[row["state"]] = out.get(row["state"], 0) + 1
        return out


def collect(paths: StudyPaths, spec: StudySpec) -> tuple[list[dict[str, Any]], dict | None]:
    """Rows {number, state, value, params, run_id, ray_trial_id} from Optuna + tracking.json."""
    import optuna

    from dhkd.study.state.live import extended_values

    study = optuna.load_study(study_name=spec.name, storage=paths.optuna_url)
    runs = (read_json(paths.tracking_state, {}) or {}).get("runs", {})
    extended = extended_values(paths, spec.objective.metric)  # topped up: over all units
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append(
            {
                "number": t.number,
                "state": OPTUNA_TO_STATE.get(t.state.name, t.state.name),
                "value": extended.get(t.number, t.value),
                "params": t.user_attrs.get("params", t.params),
                "ray_trial_id": t.user_attrs.get("ray_trial_id"),
                "run_id": runs.get(str(t.number), {}).get("run_id"),
                "last_epoch": max(t.intermediate_values, default=None),
            }
        )
    done = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    best = None
    if done:
        pick = max if spec.objective.mode == "max" else min
        best = pick(done, key=lambda r: r["value"])
    return rows, best


def write_summary(paths: StudyPaths, summary: StudySummary) -> Path:
    out = paths.dir / "summary.json"
    write_json(
        out,
        {
            "name": summary.name,
            "complete": summary.complete,
            "counts": summary.counts(),
            "best": summary.best,
            "trials": summary.trials,
            "tracking_uri": summary.tracking_uri,
            "tracking_pending": summary.tracking_pending,
            "wall_s": summary.wall_s,
            "compute": summary.compute,
            "startup": summary.startup,
        },
    )
    return out


def format_summary(spec: StudySpec, summary: StudySummary) -> str:
    metric = spec.objective.metric
    lines = [f"study {summary.name}: " + ", ".join(f"{n} {s}" for s, n in summary.counts().items())]
    lines.append(f"  {'#':>3}  {'state':<9} {metric:>12}  params")
    for row in summary.trials:
        value = "" if row["value"] is None else f"{row['value']:.4f}"
        params = " ".join(f"{k}={v}" for k, v in row["params"].items())
        lines.append(f"  {row['number']:>3}  {row['state']:<9} {value:>12}  {params}")
    if summary.best:
        params = " ".join(f"{k}={v}" for k, v in summary.best["params"].items()) or "(fixed only)"
        lines.append(f"best: trial #{summary.best['number']} {metric}={summary.best['value']:.4f}"
                     f" with {params}")  # fmt: skip
    if summary.compute:
        lines.append(format_compute(summary.compute))
    if not summary.complete:
        lines.append("the study is not finished: run the same command again to resume it "
                     "(interrupted trials continue from their checkpoints)")  # fmt: skip
    if summary.tracking_pending:
        lines.append(
            f"{summary.tracking_pending} tracking operations could not be logged; they are kept "
            f"in {summary.experiment / 'study' / 'outbox.jsonl'} and are sent on the next run or "
            f"by `dhkd study sync {summary.name} --storage-path {summary.experiment.parent}`"
        )
    for text in summary.tracking_rejected:
        lines.append(f"tracking rejected: {text}")
    lines.append(f"results: {summary.experiment}")
    lines.append(f"browse: dhkd ui --tracking-uri {summary.tracking_uri} --study {summary.name}")
    return "\n".join(lines)


def format_compute(compute: dict[str, Any]) -> str:
    devices = ", ".join(compute.get("devices") or []) or "no device reported yet"
    return (
        f"compute: {compute.get('cpu_s', 0.0) / 3600:.3g} CPU-hours, "
        f"{compute.get('gpu_s', 0.0) / 3600:.3g} GPU-hours, "
        f"{compute.get('wall_s', 0.0) / 3600:.3g} trial-hours ({devices})"
    )
