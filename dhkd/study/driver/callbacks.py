"""Driver-side Tune callbacks: MLflow tracking of every trial, and concise progress lines.

Both run in the driver process only (never in trials) and hold nothing that cannot be
rebuilt from the study folder: Tuner.restore unpickles them from tuner.pkl, and `setup`
reconnects them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from ray.tune import Callback

from dhkd.runs.layout import RunFolder
from dhkd.study.design.spec import StudySpec
from dhkd.study.driver.budget import budget_state
from dhkd.study.driver.trainable import NODE_ID, STAGE_LOSSES
from dhkd.study.state.layout import StudyPaths, read_json
from dhkd.study.state.live import cost_metrics, read_live, trial_cost
from dhkd.study.state.outcome import (
    COMPLETE,
    EPOCH,
    FAILED,
    OBJECTIVE,
    PARAMS,
    PRUNED,
    TRIAL_NUMBER,
    UNITS,
    tracked_metrics,
    trial_outcome,
)
from dhkd.study.tracking.presentation import NOTE, objective_name, trial_note
from dhkd.study.tracking.provenance import provenance_of
from dhkd.study.tracking.tracker import Tracker


def trial_params(spec: StudySpec, config: dict[str, Any]) -> dict[str, Any]:
    """MLflow params of a trial: its settings, the resolved TrainConfig (flat), nothing else."""
    return spec.trial_config(config.get(PARAMS, {})).to_flat_dict()


def trial_tags(spec: StudySpec, config: dict[str, Any]) -> dict[str, str]:
    """Bookkeeping of a trial run (tags, so the compare view has no such axes) and its
    description while it runs."""
    searched = config.get(PARAMS, {})
    return {
        "dhkd.categories": ",".join(spec.data.category_names),
        "dhkd.seeds": ",".join(str(s) for s in spec.seeds),
        "dhkd.objective": f"{spec.objective.mode} {objective_name(spec)}",
        "dhkd.searched": ",".join(sorted(searched)),
        NOTE: trial_note(spec, config.get(TRIAL_NUMBER), searched),
    }


def trial_config_yaml(spec: StudySpec, config: dict[str, Any]) -> str:
    cfg = spec.trial_config(config.get(PARAMS, {}))
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def error_text(trial) -> str:
    path = getattr(trial, "error_file", None)
    if path and Path(path).is_file():
        return Path(path).read_text()
    err = trial.get_error() if hasattr(trial, "get_error") else None
    return str(err) if err else "the trial failed without an error message"


def artifacts_of(trial) -> str | None:
    checkpoint = trial.checkpoint
    if checkpoint is None:
        return None
    folder = Path(checkpoint.path) / "artifacts"
    return str(folder) if folder.is_dir() else None


def snapshot_weights(spec: StudySpec, trial, out: Path) -> str | None:
    """A folder holding checkpoint.pt made from the trial's last training snapshot (a trial
    stopped early); None when it has no snapshot."""
    import torch

    from dhkd.weights import from_training_state, save_weights

    checkpoint = trial.checkpoint
    state_file = Path(checkpoint.path) / "state.pt" if checkpoint is not None else None
    if state_file is None or not state_file.is_file():
        return None
    state = torch.load(state_file, map_location="cpu", weights_only=True)
    cfg = spec.trial_config(trial.config.get(PARAMS, {}))
    out.mkdir(parents=True, exist_ok=True)
    save_weights(from_training_state(cfg, state), RunFolder(out).checkpoint)
    return str(out)


def stop_reason(paths: StudyPaths, trial) -> str:
    stopped = (read_json(paths.scheduler_state, {}) or {}).get("stopped", {})
    return f"asha at epoch {stopped[trial.trial_id]}" if trial.trial_id in stopped else "stopped"


def ending_note(spec: StudySpec, paths: StudyPaths, trial, state: str, error: str = "") -> str:
    """The trial's description once it ended: COMPLETE / PRUNED by ... / FAILED, at which
    epoch, with its objective or the first line of its error."""
    result = trial.last_result or {}
    epoch, value = result.get(EPOCH), result.get(OBJECTIVE)
    by = ""
    if state == PRUNED:
        stopped = (read_json(paths.scheduler_state, {}) or {}).get("stopped", {})
        if trial.trial_id in stopped:
            by, epoch = "ASHA", stopped[trial.trial_id]
        elif budget_state(paths).get("exhausted"):
            by = "the time budget"
    return trial_note(spec, trial.config[TRIAL_NUMBER], trial.config.get(PARAMS, {}), state,
                      epoch=epoch, value=value, stopped_by=by, error=error)  # fmt: skip


class TrackingCallback(Callback):
    def __init__(self, paths: StudyPaths, spec: StudySpec) -> None:
        self.paths = paths
        self.spec = spec
        self.tracker: Tracker | None = None
        self.nodes: dict[str, str] = {}  # trial id -> Ray node id of its latest result

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "tracker": None}

    def setup(self, **info) -> None:
        self.tracker = Tracker.open(self.paths)
        self.nodes = {}

    def _tracker(self) -> Tracker:
        if self.tracker is None:
            self.tracker = Tracker.open(self.paths)
        return self.tracker

    def _start(self, trial) -> None:
        self._tracker().start_trial(
            trial.config[TRIAL_NUMBER],
            trial.trial_id,
            trial_params(self.spec, trial.config),
            tags=trial_tags(self.spec, trial.config),
            config=trial_config_yaml(self.spec, trial.config),
        )

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        if trial.config.get(UNITS):
            return  # a top-up of a finished trial: its run gets the merged results at the end
        self._start(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if trial.config.get(UNITS):
            return
        number = trial.config[TRIAL_NUMBER]
        node = result.get(NODE_ID)
        if node and self.nodes.get(trial.trial_id) != node:  # first result on this node
            self.nodes[trial.trial_id] = node
            self._tracker().submit({"op": "trial_node", "number": number, "node_id": node,
                                    "node_ip": result.get("node_ip")})  # fmt: skip
        if EPOCH in result:
            metrics = tracked_metrics(result, self.spec.objective.metric)
            self._tracker().log_metrics(number, metrics, int(result[EPOCH]))
        elif result.get(STAGE_LOSSES):
            for key, values in json.loads(result[STAGE_LOSSES]).items():
                self._tracker().log_history(number, key, values)

    def _cost(self, trial) -> tuple[dict[str, float], dict[str, str]]:
        """Metrics cost/{wall,cpu,gpu}_s over every attempt, and the `device` tag (live.json,
        which LiveCallback, called before this one, has just updated)."""
        rec = read_live(self.paths)["trials"].get(str(trial.config[TRIAL_NUMBER]), {})
        return cost_metrics(trial_cost(rec, self.spec.resources.gpu))

    def _extended(self, trial) -> None:
        """A top-up ended: the trial's run gets the metrics over all its units (at its final
        step, newer than the first ones), its compute so far and a metrics.json of every unit.
        The top-up's weights and fingerprint stay out: the run keeps its first ones."""
        from dhkd.study.driver.extend import merged_artifacts

        number = trial.config[TRIAL_NUMBER]
        rec = read_live(self.paths)["trials"].get(str(number), {})
        if not rec.get("extended") or trial_outcome(trial.last_result, error=False) != COMPLETE:
            return
        cost, tags = self._cost(trial)
        tags["units"] = ",".join(f"{c}:{s}" for c, s in rec["units"])[:4000]
        covered = trial_tags(self.spec, trial.config)  # the categories and seeds it now covers
        tags.update({k: covered[k] for k in ("dhkd.categories", "dhkd.seeds")})
        folder = merged_artifacts(artifacts_of(trial), rec.get("unit_rows") or [], rec["final"])
        try:
            self._tracker().extend_trial(number, {**rec["final"], **cost}, tags, folder,
                                         step=int(trial.last_result.get(EPOCH, 0)))  # fmt: skip
        finally:
            if folder:
                shutil.rmtree(folder, ignore_errors=True)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if trial.config.get(UNITS):
            self._extended(trial)
            return
        state = trial_outcome(trial.last_result, error=False)
        metrics, tags = self._cost(trial)
        if state == PRUNED:
            tags["stop_reason"] = stop_reason(self.paths, trial)
        error = "the trial finished but its objective is not a finite number"
        folder = artifacts_of(trial)
        extra = provenance_of(folder, state, self.spec.weights_kept)
        error = error if state == FAILED else None
        note = ending_note(self.spec, self.paths, trial, state, error or "")
        with tempfile.TemporaryDirectory(prefix="dhkd-snapshot-") as tmp:
            if folder is None and state == PRUNED and self.spec.weights_kept == "all":
                folder = snapshot_weights(self.spec, trial, Path(tmp))
            self._tracker().end_trial(
                trial.config[TRIAL_NUMBER],
                state,
                artifacts=folder,
                error=error,
                tags={**extra["tags"], **tags, NOTE: note},
                exclude=extra["exclude"],
                inputs=extra["inputs"],
                metrics=metrics,
            )

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        if trial.config.get(UNITS):
            return  # a failed top-up: the trial keeps what it had; the next run tries again
        error = error_text(trial)
        metrics, tags = self._cost(trial)
        tags["failures"] = str(trial.num_failures)
        tags[NOTE] = ending_note(self.spec, self.paths, trial, FAILED, error)
        self._tracker().end_trial(
            trial.config[TRIAL_NUMBER], FAILED, error=error, tags=tags, metrics=metrics
        )

    def on_experiment_end(self, trials, **info) -> None:
        """Trials Tune ended without telling anyone: out of budget (PRUNED in Optuna and
        MLflow) or interrupted with the driver (run KILLED, Optuna RUNNING: resumable)."""
        import optuna

        from dhkd.study.driver.searcher import finish_trial

        study = optuna.load_study(study_name=self.spec.name, storage=self.paths.optuna_url)
        frozen = study.get_trials(deepcopy=False)
        exhausted = budget_state(self.paths).get("exhausted", False)
        for trial in trials:
            number = trial.config.get(TRIAL_NUMBER)
            if number is None or number >= len(frozen) or frozen[number].state.is_finished():
                continue  # (top-ups included: their trials are COMPLETE)
            if exhausted:
                finish_trial(study, number, PRUNED, None)
                self._start(trial)
                metrics, tags = self._cost(trial)
                tags["stop_reason"] = "budget"
                tags[NOTE] = ending_note(self.spec, self.paths, trial, PRUNED)
                self._tracker().end_trial(number, PRUNED, tags=tags, metrics=metrics)
            else:
                self._tracker().end_trial(number, None)


class ProgressCallback(Callback):
    """One line per trial event, with the best value so far: `[study] #3 COMPLETE ... best`."""

    def __init__(self, paths: StudyPaths, spec: StudySpec, total: int) -> None:
        self.paths = paths
        self.spec = spec
        self.total = total
        self.best: tuple[float, int] | None = None
        self.start = time.time()
        self.nodes: dict[str, str] = {}

    def setup(self, **info) -> None:
        import optuna
        from optuna.trial import TrialState

        self.start = time.time()
        self.nodes = {}
        study = optuna.load_study(study_name=self.spec.name, storage=self.paths.optuna_url)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if self._better(t.value):
                self.best = (float(t.value), t.number)

    def _done(self, trials, trial) -> str:
        done = 1 + sum(t.status in ("TERMINATED", "ERROR") for t in trials if t is not trial)
        return f"{done}/{self.total} done"

    def _line(self, text: str) -> None:
        elapsed = time.time() - self.start
        best = "" if self.best is None else f" | best #{self.best[1]} {self.best[0]:.4f}"
        print(f"[{self.spec.name} {elapsed:6.0f}s] {text}{best}", flush=True)

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best[0] if self.spec.objective.mode == "max" else value < self.best[0]

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        params = " ".join(f"{k}={v}" for k, v in trial.config.get(PARAMS, {}).items())
        if trial.config.get(UNITS):
            params = f"(extension: {len(trial.config[UNITS])} new units) {params}"
        self._line(f"#{trial.config[TRIAL_NUMBER]} started ({trial.trial_id}) {params}")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        node = result.get(NODE_ID)
        if node and self.nodes.get(trial.trial_id) != node:
            self.nodes[trial.trial_id] = node
            self._line(f"#{trial.config[TRIAL_NUMBER]} runs on node {node[:12]} "
                       f"({result.get('node_ip', '?')})")  # fmt: skip
        if OBJECTIVE in result and not result.get("finished"):
            self._line(
                f"#{trial.config[TRIAL_NUMBER]} epoch {result.get(EPOCH)} "
                f"val {self.spec.objective.metric}={result[OBJECTIVE]:.4f}"
            )

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        result = trial.last_result
        state = trial_outcome(result, error=False)
        value = result.get(OBJECTIVE)
        if state != PRUNED and value is not None and self._better(value):
            self.best = (float(value), trial.config[TRIAL_NUMBER])
        metric = self.spec.objective.metric
        shown = f" val {metric}={value:.4f}" if value is not None else ""
        test = result.get(f"test/{metric}")
        shown += f" test {metric}={test:.4f}" if test is not None else ""
        self._line(f"#{trial.config[TRIAL_NUMBER]} {state}{shown} at epoch "
                   f"{result.get(EPOCH)} ({self._done(trials, trial)})")  # fmt: skip

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._line(f"#{trial.config[TRIAL_NUMBER]} failed; retrying "
                   f"({trial.num_failures}/{self.spec.retries})")  # fmt: skip

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        last = error_text(trial).strip().splitlines()[-1:] or [""]
        self._line(f"#{trial.config[TRIAL_NUMBER]} FAILED: {last[0][:160]} "
                   f"({self._done(trials, trial)})")  # fmt: skip
