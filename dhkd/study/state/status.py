"""`dhkd study status`: where a study stands, from any shell, while it runs or after.

Read-only: Optuna's sqlite is opened with mode=ro, and live.json, budget.json, driver.lock
and spec.yaml are only read. Without the storage folder (another machine), the same picture
comes from MLflow alone (trial runs and their state tags), with less detail.
"""

from __future__ import annotations

import time
from typing import Any

from dhkd.errors import DhkdError
from dhkd.study.driver.budget import budget_state
from dhkd.study.driver.lock import holder_alive, read_lock
from dhkd.study.state.layout import StudyPaths
from dhkd.study.state.live import INTERRUPTED, RUNNING, extended_values, read_live, study_cost

STATES = ("COMPLETE", "PRUNED", "FAILED", RUNNING, INTERRUPTED, "WAITING")
OPTUNA_TO_STATE = {"COMPLETE": "COMPLETE", "PRUNED": "PRUNED", "FAIL": "FAILED"}


def _spec(paths: StudyPaths):
    import yaml

    from dhkd.study.design.spec import parse_spec

    if not paths.spec.is_file():
        raise DhkdError(
            f"no study at {paths.experiment} (spec.yaml is missing); pass the --storage-path "
            "the study runs with, or --tracking-uri to read it from MLflow"
        )
    return parse_spec(yaml.safe_load(paths.spec.read_text()), source=str(paths.spec))


def _optuna_trials(paths: StudyPaths, name: str) -> list:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///file:{paths.dir / 'optuna.db'}?mode=ro&uri=true"
    if not (paths.dir / "optuna.db").is_file():
        return []
    for attempt in range(5):  # the driver may hold a write lock for a moment
        try:
            return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
        except Exception as exc:
            if "locked" not in str(exc) or attempt == 4:
                raise
            time.sleep(0.2)
    return []


def study_status(paths: StudyPaths, now: float | None = None) -> dict[str, Any]:
    """The status of the study stored under `paths` (see the module docstring)."""
    now = time.time() if now is None else now
    spec = _spec(paths)
    holder = read_lock(paths.dir / "driver.lock")
    alive = holder is not None and holder_alive(holder, now)
    live = read_live(paths)["trials"]
    extended = extended_values(paths, spec.objective.metric)
    counts = dict.fromkeys(STATES, 0)
    running, durations, done = [], [], []
    trials = _optuna_trials(paths, spec.name)
    epochs = spec.final_epochs()
    for t in trials:
        state = OPTUNA_TO_STATE.get(t.state.name, RUNNING if alive else INTERRUPTED)
        counts[state] += 1
        if t.state.is_finished():
            if t.datetime_start and t.datetime_complete:
                durations.append((t.datetime_complete - t.datetime_start).total_seconds())
            if state == "COMPLETE" and t.value is not None:
                done.append(t)
            continue
        rec = live.get(str(t.number), {})
        started = rec.get("started") or (t.datetime_start.timestamp() if t.datetime_start else now)
        running.append(
            {
                "number": t.number,
                "state": state,
                "epoch": rec.get("epoch"),
                "epochs": epochs,
                "node": rec.get("node"),
                "node_ip": rec.get("node_ip"),
                "device": rec.get("device"),
                "elapsed_s": max(0.0, now - started),
                "params": t.user_attrs.get("params", t.params),
            }
        )
    counts["WAITING"] = max(0, spec.trials - len(trials))
    best = None
    if done:
        pick = max if spec.objective.mode == "max" else min
        t = pick(done, key=lambda t: extended.get(t.number, t.value))
        best = {"number": t.number, "value": extended.get(t.number, t.value),
                "params": t.user_attrs.get("params", t.params)}  # fmt: skip
    budget = budget_state(paths)
    used_s = float(budget.get("used_s", 0.0))
    if alive:
        used_s += now - float(holder.get("since", now))
    return {
        "name": spec.name,
        "experiment": str(paths.experiment),
        "source": "storage",
        "trials": spec.trials,
        "metric": spec.objective.metric,
        "driver": {**holder, "alive": alive} if holder else None,
        "counts": counts,
        "running": running,
        "best": best,
        "compute": study_cost({"trials": live}, spec.resources.gpu),
        "budget": {
            "time_s": spec.budget.time_s,
            "used_s": used_s,
            "gpu_hours": spec.budget.gpu_hours,
            "exhausted": budget.get("exhausted", False),
            "reason": budget.get("reason"),
        },
        "eta_s": _eta(spec, counts, running, durations, used_s if alive else None),
    }


def _eta(spec, counts, running, durations, used_s) -> float | None:
    """Seconds until the last trial ends: what the running trials still need (the mean finished
    trial's time, or their own pace per epoch before any finished) and the waiting trials at
    the mean time, `max_concurrent` at a time; capped by the time budget left."""
    if used_s is None:
        return None  # no driver: nothing progresses
    mean = sum(durations) / len(durations) if durations else None
    left = 0.0
    for r in running:
        if mean is not None:
            left += max(0.0, mean - r["elapsed_s"])
        elif r["epoch"]:
            pace = r["elapsed_s"] / r["epoch"]
            left += max(0.0, pace * r["epochs"] - r["elapsed_s"])
            mean = pace * r["epochs"]
        else:
            return None
    if counts["WAITING"]:
        if mean is None:
            return None
        left += counts["WAITING"] * mean
    eta = left / max(1, min(spec.budget.max_concurrent, spec.trials))
    if spec.budget.time_s is not None:
        eta = min(eta, max(0.0, spec.budget.time_s - used_s))
    return eta


def mlflow_status(client, uri: str, name: str, now: float | None = None) -> dict[str, Any]:
    """The status as MLflow records it (no storage folder at hand): trial runs by state tag,
    running ones with their node and elapsed time, the best objective, summed compute. Only
    the trials of the latest study run of the experiment count (one study, never a mix)."""
    now = time.time() if now is None else now
    exp = client.get_experiment_by_name(name)
    if exp is None:
        raise DhkdError(f"no experiment named '{name}' at {uri}")
    counts = dict.fromkeys(STATES, 0)
    running, best, compute = [], None, {"wall_s": 0.0, "cpu_s": 0.0, "gpu_s": 0.0}
    devices: set[str] = set()
    metric, mode = "pixel_aupro", "max"
    study = client.search_runs([exp.experiment_id], "tags.`dhkd.role` = 'study'", max_results=1,
                               order_by=["attributes.start_time DESC"])  # fmt: skip
    query = "tags.`dhkd.role` = 'trial'"
    if study:
        mode = str(study[0].data.params.get("spec.objective.mode", "max"))
        metric = str(study[0].data.params.get("spec.objective.metric", metric))
        query += f" and tags.`mlflow.parentRunId` = '{study[0].info.run_id}'"
    runs = client.search_runs([exp.experiment_id], query, max_results=5000)
    for run in runs:
        state = run.data.tags.get("state", RUNNING)
        counts[state if state in counts else RUNNING] += 1
        for key in compute:
            compute[key] += float(run.data.metrics.get(f"cost/{key}", 0.0))
        if run.data.tags.get("device"):
            devices.add(run.data.tags["device"])
        if state == RUNNING:
            running.append(_mlflow_running(run, now))
        value = run.data.metrics.get(f"objective/{metric}")
        if state == "COMPLETE" and value is not None:
            better = best is None or (
                value > best["value"] if mode == "max" else value < best["value"]
            )
            if better:
                best = {"number": int(run.data.tags.get("optuna_trial_number", -1)),
                        "value": value, "params": {}}  # fmt: skip
    return {"name": name, "experiment": uri, "source": "mlflow", "trials": None,
            "metric": metric, "driver": None, "counts": counts, "running": running,
            "best": best, "compute": {**compute, "devices": sorted(devices)},
            "budget": None, "eta_s": None}  # fmt: skip


def _mlflow_running(run, now: float) -> dict[str, Any]:
    tags = run.data.tags
    return {
        "number": int(tags.get("optuna_trial_number", -1)),
        "state": RUNNING,
        "epoch": None,
        "epochs": None,
        "node": tags.get("node_id"),
        "node_ip": tags.get("node_ip"),
        "device": None,
        "elapsed_s": now - run.info.start_time / 1000,
        "params": {},
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


def format_status(status: dict[str, Any]) -> str:
    from dhkd.study.state.summary import format_compute

    counts = status["counts"]
    total = f" of {status['trials']}" if status["trials"] else ""
    lines = [f"study {status['name']} ({status['experiment']}, from {status['source']})"]
    driver = status["driver"]
    if driver is not None:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(driver.get("since", 0))))
        how = "running" if driver["alive"] else "gone (its lock is stale)"
        lines.append(f"driver: {how}: host {driver.get('host')}, pid {driver.get('pid')}, "
                     f"since {since}")  # fmt: skip
    elif status["source"] == "storage":
        lines.append("driver: none (the study is not running)")
    shown = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    lines.append(f"trials{total}: {shown or 'none yet'}")
    for r in status["running"]:
        epoch = "" if r["epoch"] is None else f" epoch {r['epoch']}/{r['epochs']}"
        node = f" node {r['node'][:12]} ({r.get('node_ip') or '?'})" if r["node"] else ""
        lines.append(f"  #{r['number']} {r['state']}{epoch}{node} elapsed "
                     f"{_duration(r['elapsed_s'])}")  # fmt: skip
    best = status["best"]
    if best:
        params = " ".join(f"{k}={v}" for k, v in best["params"].items())
        lines.append(f"best so far: #{best['number']} {status['metric']}={best['value']:.4f} "
                     f"{params}".rstrip())  # fmt: skip
    lines.append(format_compute(status["compute"]))
    budget = status["budget"]
    if budget:
        parts = [f"wall {_duration(budget['used_s'])}"]
        if budget["time_s"]:
            parts[0] += f" of {_duration(budget['time_s'])}"
        if budget["gpu_hours"]:
            parts.append(f"GPU {status['compute']['gpu_s'] / 3600:.3g} of "
                         f"{budget['gpu_hours']:g} h")  # fmt: skip
        if budget["exhausted"]:
            parts.append(f"exhausted ({budget.get('reason') or 'time_s'})")
        lines.append("budget: " + ", ".join(parts))
    if status["source"] == "storage" and driver is not None and driver["alive"]:
        lines.append(f"ETA: {_duration(status['eta_s'])}")
    return "\n".join(lines)
