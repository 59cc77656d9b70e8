"""How each tracking operation is applied to MLflow (idempotent: safe to apply twice).

Runs are located by key: tracking.json first, then a search by tags, then created; a trial run
that already has a final state is never reopened, and its first final state is kept.

An operation is a plain dict whose "op" names its entry in OPERATIONS; each entry is applied to
a `RunStore` (the client, the persisted state and where artifacts go), which Tracker provides.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from dhkd.runs.layout import RunFolder
from dhkd.study.state.outcome import COMPLETE, FAILED, PRUNED, RUN_STATUS, RUNNING
from dhkd.study.tracking.presentation import NOTE, run_route

STUDY_TAGS = ("dhkd.role", "dhkd.study", "dhkd.study_uid")
MAX_TAG = 5000
FINAL_STATES = (COMPLETE, PRUNED, FAILED)
UNKNOWN_STEP = 1 << 30  # a run found in MLflow: every step it gets is checked there first
log = logging.getLogger(__name__)


class RunStore(Protocol):
    """What an operation needs: an MlflowClient, the tracking state (tracking.json) and a way
    to persist it, and the artifact root for new experiments."""

    client: Any
    state: dict[str, Any]
    artifact_location: str | None

    def save(self) -> None: ...


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]


def _log(tr: RunStore, run_id: str, params=None, tags=None, metrics=None, ts=None, step=0):
    from mlflow.entities import Metric, Param, RunTag

    items = list((params or {}).items())
    for i in range(0, len(items), 100):
        batch = [Param(k, _param_value(v)) for k, v in items[i : i + 100]]
        tr.client.log_batch(run_id, params=batch)
    if tags:
        tr.client.log_batch(run_id, tags=[RunTag(k, str(v)[:MAX_TAG]) for k, v in tags.items()])
    if metrics:
        tr.client.log_batch(
            run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()]
        )


def _experiment(tr: RunStore, name: str) -> str:
    if tr.state.get("experiment_id"):
        return tr.state["experiment_id"]
    exp = tr.client.get_experiment_by_name(name)
    if exp is None:
        root = tr.artifact_location
        location = f"{root.rstrip('/')}/{name}" if root else None
        try:
            exp_id = tr.client.create_experiment(
                name, artifact_location=location, tags={"dhkd.study": name}
            )
        except Exception:  # created meanwhile by another driver: use it
            exp = tr.client.get_experiment_by_name(name)
            if exp is None:
                raise
            exp_id = exp.experiment_id
    else:
        exp_id = exp.experiment_id
        if exp.lifecycle_stage == "deleted":
            tr.client.restore_experiment(exp_id)
    tr.state["experiment_id"] = exp_id
    tr.state["experiment_name"] = name
    return exp_id


def _search(tr: RunStore, filters: dict[str, str]):
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in filters.items())
    runs = tr.client.search_runs([tr.state["experiment_id"]], filter_string=query, max_results=5)
    return runs[0] if runs else None


def _reopen(tr: RunStore, run_id: str, status: str) -> None:
    if status != RUNNING:
        tr.client.update_run(run_id, status=RUNNING)


def apply_study_start(tr: RunStore, op: dict[str, Any]) -> None:
    exp_id = _experiment(tr, op["name"])
    uid = tr.state["study_uid"]
    run_id = tr.state.get("study_run_id")
    if run_id is None:
        run = _search(tr, {"dhkd.role": "study", "dhkd.study_uid": uid})
        run_id = run.info.run_id if run else None
    if run_id is None:
        tags = {"dhkd.role": "study", "dhkd.study": op["name"], "dhkd.study_uid": uid}
        run_id = tr.client.create_run(exp_id, run_name=op["name"], tags=tags).info.run_id
    else:
        _reopen(tr, run_id, tr.client.get_run(run_id).info.status)
    tr.state["study_run_id"] = run_id
    tr.save()
    for key, value in (op.get("experiment_tags") or {}).items():
        tr.client.set_experiment_tag(exp_id, key, value)
    logged = tr.client.get_run(run_id).data.params
    params, changed = {}, {}
    for key, value in op["params"].items():
        if key in logged and logged[key] != _param_value(value):
            changed[f"extended.{key}"] = _param_value(value)  # params cannot change in MLflow
        else:
            params[key] = value
    _log(tr, run_id, params=params, tags={**op["tags"], **changed})


def _trial_record(tr: RunStore, number: int, trial_id: str | None = None) -> dict[str, Any]:
    runs = tr.state["runs"]
    rec = runs.get(str(number))
    if rec is not None:
        return rec
    parent = tr.state["study_run_id"]
    run = _search(tr, {"mlflow.parentRunId": parent, "optuna_trial_number": str(number)})
    if run is not None:
        state = run.data.tags.get("state")
        rec = {"run_id": run.info.run_id, "state": state if state in FINAL_STATES else None,
               "step": UNKNOWN_STEP}  # fmt: skip
    else:
        tags = {
            "mlflow.parentRunId": parent,
            "dhkd.role": "trial",
            "dhkd.study": tr.state.get("experiment_name", ""),
            "optuna_trial_number": str(number),
            "trial_id": trial_id or "",
            "state": RUNNING,
        }
        run = tr.client.create_run(
            tr.state["experiment_id"], run_name=f"trial-{number:03d}", tags=tags
        )
        rec = {"run_id": run.info.run_id, "state": None}
    runs[str(number)] = rec
    tr.save()
    return rec


def apply_trial_start(tr: RunStore, op: dict[str, Any]) -> None:
    rec = _trial_record(tr, op["number"], op["trial_id"])
    if rec.get("state"):
        return  # already final: a rerun of a finished trial is not tracked again
    _reopen(tr, rec["run_id"], tr.client.get_run(rec["run_id"]).info.status)
    tags = {**(op.get("tags") or {}), "trial_id": op["trial_id"], "state": RUNNING}
    _log(tr, rec["run_id"], params=op["params"], tags=tags)
    if op.get("config"):
        tr.client.log_text(rec["run_id"], op["config"], RunFolder.CONFIG)
    rec["trial_id"] = op["trial_id"]
    tr.save()


def apply_metrics(tr: RunStore, op: dict[str, Any]) -> None:
    """Log one epoch's metrics once: an epoch reported again (a trial resumed from a checkpoint
    older than its last report, or an operation replayed twice) adds no second point.

    `step` in the trial's record is the highest step whose logging began; it is saved before
    logging, so a step above it is new, and one at or below it is checked against MLflow."""
    number = int(op["key"].split(":")[1])
    rec = _trial_record(tr, number)
    if rec.get("state"):
        return
    step, metrics = int(op["step"]), dict(op["metrics"])
    if step <= rec.get("step", -1):
        metrics = _not_logged(tr, rec["run_id"], metrics, step)
    else:
        rec["step"] = step
        tr.save()
    if metrics:
        _log(tr, rec["run_id"], metrics=metrics, ts=op["ts"], step=step)


def apply_history(tr: RunStore, op: dict[str, Any]) -> None:
    """Log a finished stage's per-epoch values of one metric (step = epoch), each step once:
    steps MLflow already has (a replayed operation, a retried trial) are skipped."""
    from mlflow.entities import Metric

    number = int(op["key"].split(":")[1])
    rec = _trial_record(tr, number)
    if rec.get("state"):
        return
    key = op["metric"]
    have = {m.step for m in tr.client.get_metric_history(rec["run_id"], key)}
    points = [
        Metric(key, value, op["ts"], step)
        for step, value in enumerate(op["values"], start=1)
        if step not in have
    ]
    if points:
        tr.client.log_batch(rec["run_id"], metrics=points)


def _not_logged(tr: RunStore, run_id: str, metrics: dict[str, float], step: int):
    """The metrics that have no point at `step` in MLflow yet."""
    return {
        key: value
        for key, value in metrics.items()
        if all(m.step != step for m in tr.client.get_metric_history(run_id, key))
    }


def apply_trial_node(tr: RunStore, op: dict[str, Any]) -> None:
    """Tags `node_id` / `node_ip`: where the trial runs now; `node_history`: every node it ran
    on, in order (a retry after a lost node adds one; replaying the operation adds nothing)."""
    rec = _trial_record(tr, op["number"])
    if rec.get("state"):
        return
    tags = tr.client.get_run(rec["run_id"]).data.tags
    history = [n for n in tags.get("node_history", "").split(",") if n]
    if not history or history[-1] != op["node_id"]:
        history.append(op["node_id"])
    tags = {"node_id": op["node_id"], "node_ip": op.get("node_ip") or "",
            "node_history": ",".join(history)[-MAX_TAG:]}  # fmt: skip
    _log(tr, rec["run_id"], tags=tags)


def apply_trial_end(tr: RunStore, op: dict[str, Any]) -> None:
    rec = _trial_record(tr, op["number"])
    if rec.get("state"):
        return  # the first final state is kept (Optuna keeps it too)
    run_id, state = rec["run_id"], op["state"]
    tags = dict(op.get("tags") or {})
    if state is None:  # interrupted with the driver: resumable
        _log(tr, run_id, tags={**tags, "state": "INTERRUPTED"})
        tr.client.set_terminated(run_id, status="KILLED")
        return
    if op.get("artifacts"):
        _log_artifacts(tr, run_id, Path(op["artifacts"]), set(op.get("exclude") or ()))
    if op.get("inputs"):
        _log_inputs(tr, run_id, op["inputs"])
    if op.get("error"):
        tr.client.log_text(run_id, op["error"], "error.txt")
        tags["error"] = _error_summary(op["error"])
    _log(tr, run_id, tags={**tags, "state": state}, metrics=op.get("metrics"),
         ts=op.get("ts") or int(time.time() * 1000))  # fmt: skip
    tr.client.set_terminated(run_id, status=RUN_STATUS[state])
    rec["state"] = state
    tr.save()


def apply_trial_retry(tr: RunStore, op: dict[str, Any]) -> None:
    """A FAILED trial run again (`dhkd study run --retry-failed`): the same run is reopened
    (RUNNING, its `error` tag moved to `previous_error`, `retries` counted) and its next final
    state is recorded as any first one; a trial not FAILED (a replay) is left alone."""
    rec = _trial_record(tr, op["number"])
    if rec.get("state") != FAILED:
        return
    run = tr.client.get_run(rec["run_id"])
    tags = {"state": RUNNING, "retries": str(int(run.data.tags.get("retries", "0")) + 1)}
    if "error" in run.data.tags:
        tags["previous_error"] = run.data.tags["error"]
        tr.client.delete_tag(rec["run_id"], "error")
    _log(tr, rec["run_id"], tags=tags)
    tr.client.update_run(rec["run_id"], status=RUNNING)
    rec["state"] = None
    tr.save()


def _log_artifacts(tr: RunStore, run_id: str, folder: Path, exclude: set[str]) -> None:
    """The files of `folder` (top level) but those named in `exclude`."""
    if not exclude:
        tr.client.log_artifacts(run_id, str(folder))
        return
    for path in sorted(folder.iterdir()):
        if path.name in exclude:
            continue
        if path.is_dir():
            tr.client.log_artifacts(run_id, str(path), artifact_path=path.name)
        else:
            tr.client.log_artifact(run_id, str(path))


def _log_inputs(tr: RunStore, run_id: str, inputs: list[dict[str, Any]]) -> None:
    """Dataset inputs of a run; a store that refuses them costs a warning, not the trial."""
    from dhkd.fingerprint import mlflow_datasets

    try:
        tr.client.log_inputs(run_id, datasets=mlflow_datasets(inputs))
    except Exception as exc:
        log.warning("dataset inputs of run %s not logged: %s", run_id, str(exc)[:300])


def apply_trial_extend(tr: RunStore, op: dict[str, Any]) -> None:
    """Metrics of a finished trial over all its units once an extension topped it up: logged
    at its final step with a later timestamp (so they are the run's latest values), with a
    metrics.json of every unit; applying it twice logs the same values again."""
    rec = _trial_record(tr, op["number"])
    run_id = rec["run_id"]
    if op.get("artifacts") and Path(op["artifacts"]).is_dir():
        tr.client.log_artifacts(run_id, op["artifacts"])
    _log(tr, run_id, tags=op.get("tags"), metrics=op.get("metrics"), ts=op["ts"], step=op["step"])


def _error_summary(text: str) -> str:
    """The last lines of a traceback (where the exception message is), at most MAX_TAG chars."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-6:])[-MAX_TAG:]


def apply_study_end(tr: RunStore, op: dict[str, Any]) -> None:
    run_id = tr.state["study_run_id"]
    if op.get("artifacts"):
        tr.client.log_artifacts(run_id, op["artifacts"])
    _log(tr, run_id, metrics=op.get("metrics"), ts=op["ts"], step=0)
    if op.get("note"):
        _log(tr, run_id, tags={NOTE: _with_best_link(tr, op["note"], op.get("best"))})
    tr.client.set_terminated(run_id, status=op["status"])


def _with_best_link(tr: RunStore, note: str, best: int | None) -> str:
    """The note with `{best}` replaced by a link to the best trial's run (its name alone while
    the run is unknown)."""
    if best is None:
        return note
    rec = tr.state["runs"].get(str(best))
    name = f"trial #{best}"
    link = f"[{name}]({run_route(tr.state['experiment_id'], rec['run_id'])})" if rec else name
    return note.replace("{best}", link)


def apply_reference(tr: RunStore, op: dict[str, Any]) -> None:
    """The study's reference run (tag dhkd.role=reference), nested under the study run, with
    its params, metrics and outputs; logged once per set of (category, seed) units (an
    extended study's reference, measured again on more units, is logged again to that run)."""
    parent = tr.state["study_run_id"]
    run_id = tr.state.get("reference_run_id")
    if run_id is None:
        run = _search(tr, {"mlflow.parentRunId": parent, "dhkd.role": "reference"})
        if run is None:
            tags = {"mlflow.parentRunId": parent, "dhkd.role": "reference",
                    "dhkd.study": tr.state.get("experiment_name", ""),
                    "dhkd.reference": op["method"], "state": RUNNING}  # fmt: skip
            run = tr.client.create_run(
                tr.state["experiment_id"], run_name=f"reference-{op['method']}", tags=tags
            )
        elif run.data.tags.get("state") == COMPLETE:
            tr.state["reference_logged"] = True
        run_id = run.info.run_id
        tr.state["reference_run_id"] = run_id
        tr.save()
    units = op.get("units")
    if tr.state.get("reference_logged") and tr.state.get("reference_units") == units:
        return
    _log(tr, run_id, params=op["params"])
    _log_artifacts(tr, run_id, Path(op["artifacts"]), set(op.get("exclude") or ()))
    if op.get("inputs"):
        _log_inputs(tr, run_id, op["inputs"])
    note = f"Reference **{op['method']}**, measured once per (category, seed) of the study."
    tags = {**(op.get("tags") or {}), "state": COMPLETE, NOTE: note}
    _log(tr, run_id, tags=tags, metrics=op["metrics"],
         ts=int(time.time() * 1000))  # fmt: skip
    tr.client.set_terminated(run_id, status="FINISHED")
    tr.state["reference_logged"] = True
    tr.state["reference_units"] = units
    tr.save()


Operation = Callable[[RunStore, dict[str, Any]], None]
OPERATIONS: dict[str, Operation] = {
    "study_start": apply_study_start,
    "trial_start": apply_trial_start,
    "metrics": apply_metrics,
    "history": apply_history,
    "trial_node": apply_trial_node,
    "trial_end": apply_trial_end,
    "trial_retry": apply_trial_retry,
    "trial_extend": apply_trial_extend,
    "study_end": apply_study_end,
    "reference": apply_reference,
}
