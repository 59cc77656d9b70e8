"""What the driver knows about its trials while they run, and the compute they used.

`study/live.json` (written by LiveCallback in the driver, atomically, at every trial event):

    {"updated": t, "trials": {"<number>": {"trial_id", "status", "epoch", "node", "node_ip",
     "device", "started", "updated", "ended", "attempts": {"<attempt>": {"wall_s", "cpu_s"}}}}}

status is RUNNING while Tune runs the trial, then COMPLETE / PRUNED / FAILED, or INTERRUPTED
when the driver ended before it did. Each attempt of a trial (a retry, a resume after a
restart) reports its own wall and CPU seconds (`train/compute_s`, `cpu_s`); a trial's compute is
the sum over its attempts, and its GPU seconds are its wall seconds times the GPU share it was
given (`resources.gpu`) when it ran on a GPU. `dhkd study status` and the gpu_hours budget
read this file; nothing here talks to MLflow or Optuna.
"""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback

from dhkd.runs.layout import RunFolder
from dhkd.study.design.spec import StudySpec
from dhkd.study.design.units import as_units, merge_final
from dhkd.study.driver.trainable import NODE_ID
from dhkd.study.state.layout import StudyPaths, read_json, write_json
from dhkd.study.state.outcome import (
    ATTEMPT,
    COMPLETE,
    COMPUTE_S,
    CPU_S,
    DEVICE,
    EPOCH,
    FAILED,
    TRIAL_NUMBER,
    UNITS,
    objective_key,
    tracked_metrics,
    trial_outcome,
)

RUNNING, INTERRUPTED = "RUNNING", "INTERRUPTED"


def live_path(paths: StudyPaths):
    return paths.dir / "live.json"


def read_live(paths: StudyPaths) -> dict[str, Any]:
    return read_json(live_path(paths), None) or {"trials": {}}


def on_gpu(device: str | None) -> bool:
    return bool(device) and not str(device).startswith("cpu")


def trial_cost(rec: dict[str, Any], gpu_share: float) -> dict[str, Any]:
    """{wall_s, cpu_s, gpu_s, device} of one trial over all its attempts."""
    attempts = (rec.get("attempts") or {}).values()
    wall = sum(float(a.get("wall_s", 0.0)) for a in attempts)
    cpu = sum(float(a.get("cpu_s", 0.0)) for a in attempts)
    device = rec.get("device") or "unknown"
    gpu = wall * gpu_share if on_gpu(device) else 0.0
    return {"wall_s": wall, "cpu_s": cpu, "gpu_s": gpu, "device": device}


def cost_metrics(cost: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """A run's compute as MLflow logs it: metrics cost/{wall,cpu,gpu}_s and the `device` tag."""
    metrics = {f"cost/{k}": float(cost[k]) for k in ("wall_s", "cpu_s", "gpu_s")}
    return metrics, {"device": str(cost["device"])}


def study_cost(live: dict[str, Any], gpu_share: float) -> dict[str, Any]:
    """Sums over every trial: wall, CPU and GPU seconds, and the devices trials ran on."""
    costs = [trial_cost(rec, gpu_share) for rec in live.get("trials", {}).values()]
    return {
        "wall_s": sum(c["wall_s"] for c in costs),
        "cpu_s": sum(c["cpu_s"] for c in costs),
        "gpu_s": sum(c["gpu_s"] for c in costs),
        "devices": sorted({c["device"] for c in costs if c["device"] != "unknown"}),
    }


def gpu_budget_left(paths: StudyPaths, spec: StudySpec) -> bool:
    """Whether one more trial fits in budget.gpu_hours: the GPU seconds used, the running
    trials at (at least) the mean finished trial's cost, and one more such trial."""
    cap = spec.budget.gpu_hours
    if cap is None:
        return True
    share = spec.resources.gpu
    records = list(read_live(paths).get("trials", {}).values())
    finished = [trial_cost(r, share)["gpu_s"] for r in records if r.get("status") != RUNNING]
    mean = sum(finished) / len(finished) if finished else 0.0
    projected = mean + sum(
        max(trial_cost(r, share)["gpu_s"], mean if r.get("status") == RUNNING else 0.0)
        for r in records
    )
    return projected <= cap * 3600.0


def _unit_rows(trial) -> list[dict[str, Any]]:
    """The per-unit rows of metrics.json in the trial's final checkpoint (empty if none)."""
    import json
    from pathlib import Path

    checkpoint = trial.checkpoint
    path = RunFolder(Path(checkpoint.path) / "artifacts").metrics if checkpoint else None
    if path is None or not path.is_file():
        return []
    rows = json.loads(path.read_text()).get("units")
    return rows if isinstance(rows, list) else []


def extended_values(paths: StudyPaths, metric: str) -> dict[int, float]:
    """Trial number -> objective over all its units, for trials an extension topped up."""
    out = {}
    for number, rec in read_live(paths).get("trials", {}).items():
        value = (rec.get("final") or {}).get(objective_key(metric))
        if rec.get("extended") and value is not None:
            out[int(number)] = float(value)
    return out


class LiveCallback(Callback):
    """Keeps live.json: every trial's status, epoch, node, device and per-attempt compute."""

    def __init__(self, paths: StudyPaths, spec: StudySpec) -> None:
        self.paths = paths
        self.spec = spec
        self.state: dict[str, Any] = {"trials": {}}

    def setup(self, **info) -> None:
        self.state = read_live(self.paths)

    def _record(self, trial) -> dict[str, Any]:
        number = str(trial.config.get(TRIAL_NUMBER))
        return self.state["trials"].setdefault(number, {"attempts": {}})

    def _save(self) -> None:
        self.state["updated"] = time.time()
        write_json(live_path(self.paths), self.state)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        rec = self._record(trial)
        now = time.time()
        rec.setdefault("started", now)
        rec.update(trial_id=trial.trial_id, status=RUNNING, updated=now, ended=None)
        self._save()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        rec = self._record(trial)
        rec.update(status=RUNNING, updated=time.time())
        if EPOCH in result:
            rec["epoch"] = int(result[EPOCH])
        if result.get(NODE_ID):
            rec.update(node=result[NODE_ID], node_ip=result.get("node_ip"))
        if result.get(DEVICE):
            rec["device"] = result[DEVICE]
        if result.get(ATTEMPT):
            rec["attempts"][str(result[ATTEMPT])] = {
                "wall_s": float(result.get(COMPUTE_S, 0.0)),
                "cpu_s": float(result.get(CPU_S, 0.0)),
            }
        self._save()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        result = trial.last_result or {}
        if result:
            self.on_trial_result(iteration, trials, trial, result)
        status = trial_outcome(result, error=False)
        rec = self._record(trial)
        if status == COMPLETE:
            self._keep_results(rec, trial, result)
        self._end(trial, status)

    def _keep_results(self, rec: dict[str, Any], trial, result: dict[str, Any]) -> None:
        """The units a COMPLETE trial (or top-up) trained, its final metrics and per-unit rows;
        a top-up's are merged into what the trial had (driver/extend.py)."""
        units = as_units(trial.config.get(UNITS) or self.spec.units)
        final = tracked_metrics(result, self.spec.objective.metric)
        rows = _unit_rows(trial)
        if trial.config.get(UNITS) and rec.get("final"):
            old = as_units(rec.get("units") or [])
            final = {
                **final,
                **merge_final(rec["final"], old, final, units, self.spec.objective.metric),
            }
            units, rows = old + units, (rec.get("unit_rows") or []) + rows
            rec["extended"] = True
        rec.update(units=[list(u) for u in units], final=final, unit_rows=rows)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._end(trial, FAILED)

    def _end(self, trial, status: str) -> None:
        rec = self._record(trial)
        if trial.config.get(UNITS):  # a top-up: the trial stays COMPLETE over its old units
            status = COMPLETE
        rec.update(status=status, ended=time.time())
        self._save()

    def on_experiment_end(self, trials, **info) -> None:
        for rec in self.state["trials"].values():
            if rec.get("status") == RUNNING:
                rec.update(status=INTERRUPTED, ended=time.time())
        self._save()
