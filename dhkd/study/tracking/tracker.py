"""MLflow tracking of a study, done by the driver only, with an outbox for a server that is down.

Layout: one experiment per study (named after it, artifact location set explicitly), one study
run (tags dhkd.role=study, dhkd.study, dhkd.study_uid) and one nested run per Optuna trial
(mlflow.parentRunId = the study run; tags dhkd.role=trial, trial_id, optuna_trial_number,
state = RUNNING / COMPLETE / PRUNED / FAILED, and for failures `error` + an error.txt
artifact). A trial run's params are its settings (the resolved TrainConfig, flat); what is
bookkeeping (trial number, Ray trial id, nodes, state, the study's categories, seeds,
objective and searched keys) is a tag. Every trial run gets its config.yaml when it starts.
The experiment's tags and the runs' descriptions (notes) are written by presentation.py.

MLflow run status of a trial's final state:
    COMPLETE -> FINISHED                     (tag state=COMPLETE)
    PRUNED   -> FINISHED                     (tag state=PRUNED, stop_reason: asha at epoch N |
                                              budget): stopped early by the scheduler, which
                                              is a normal end of a trial, not a failure
    FAILED   -> FAILED                       (tags state=FAILED, error; error.txt)
    interrupted with the driver -> KILLED   (tag state=INTERRUPTED) until the study resumes it

Every change is an operation (a plain dict) applied by `_apply`; runs are found by key
("study", "trial:<n>") through tracking.json and, failing that, by their tags, so applying an
operation twice never creates a second run and a resumed study reuses its runs. When the server
does not answer, operations go to the outbox (outbox.py) and are replayed in order later: at
the end of the run, on the next run, or by `dhkd study sync NAME`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dhkd.errors import ConfigError, DhkdError
from dhkd.runs.tracking import check_tracking, probe
from dhkd.study.state.layout import StudyPaths, read_json, write_json
from dhkd.study.tracking.operations import OPERATIONS
from dhkd.study.tracking.outbox import Outbox

log = logging.getLogger(__name__)
RETRY_S = 30.0  # while down, try the server again at most this often
PARAM_BATCH = 100  # MLflow's limit of params per log_batch
STORAGE_TAG = "dhkd.storage_path"  # study run tag: the storage path its files are under


def default_artifact_location(uri: str) -> str | None:
    """sqlite:///X/mlflow.db -> X/mlflow-artifacts (as a file URI); None for servers (their
    --artifacts-destination applies). Each experiment gets <root>/<experiment name>."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlflow-artifacts").as_uri()
    return None


def start_tracking_check(uri: str) -> Callable[[], None]:
    """check_tracking, started now; returns the wait for its outcome (raising its error).

    A server is checked at once (a study must create nothing when it is down). A local sqlite
    store is created by its first use (its schema migrations take seconds), so it is checked in
    a thread while the driver goes on (data, Optuna, Ray start-up) and waited for before the
    first tracking operation."""
    if not uri.startswith("sqlite:"):
        check_tracking(uri)
        return lambda: None
    errors: list[BaseException] = []

    def work() -> None:
        try:
            check_tracking(uri)
        except BaseException as exc:  # re-raised by wait() in the driver's thread
            errors.append(exc)

    thread = threading.Thread(target=work, name="dhkd-tracking-check", daemon=True)
    thread.start()

    def wait() -> None:
        thread.join()
        if errors:
            exc = errors[0]
            if isinstance(exc, DhkdError):
                raise exc
            raise DhkdError(f"the tracking store {uri} cannot be used: {exc}") from exc

    return wait


class Tracker:
    def __init__(self, paths: StudyPaths, uri: str, artifact_location: str | None = None):
        from mlflow.tracking import MlflowClient

        self.paths = paths
        self.uri = uri
        self.artifact_location = artifact_location or default_artifact_location(uri)
        self.client = MlflowClient(uri)
        self.outbox = Outbox(paths.outbox, paths.outbox_files)
        self.state: dict[str, Any] = read_json(paths.tracking_state, None) or {
            "study_uid": uuid.uuid4().hex,
            "experiment_id": None,
            "runs": {},
        }
        if self.state.get("tracking_uri") != uri:  # another server: its own ids (kept aside
            self._switch(uri)  # while another server is in use), or find / create runs there
            self.save()  # every Tracker of this study now agrees on its study_uid
        self._down_since: float | None = time.time() if len(self.outbox) else None
        self._last_try = 0.0
        self.rejected: list[str] = []
        self.sent = 0  # operations the latest flush applied

    def _switch(self, uri: str) -> None:
        ids = ("tracking_uri", "experiment_id", "experiment_name", "study_run_id", "runs")
        others = self.state.setdefault("other_servers", {})
        if self.state.get("tracking_uri"):
            others[self.state["tracking_uri"]] = {k: self.state.get(k) for k in ids}
        fresh = {"tracking_uri": uri, "experiment_id": None, "study_run_id": None, "runs": {}}
        self.state.update(others.pop(uri, fresh))

    @classmethod
    def open(cls, paths: StudyPaths) -> Tracker:
        """The tracker of an existing study, with the URI its latest run recorded."""
        runtime = read_json(paths.runtime, None)
        if not runtime:
            raise DhkdError(f"no study at {paths.experiment} (runtime.json is missing)")
        return cls(paths, runtime["tracking_uri"], runtime.get("artifact_location"))

    # -- public operations ------------------------------------------------------------------
    def start_study(
        self,
        name: str,
        params: dict[str, Any],
        tags: dict[str, str],
        experiment_tags: dict[str, str] | None = None,
    ) -> None:
        self.submit({"op": "study_start", "name": name, "params": params, "tags": tags,
                     "experiment_tags": experiment_tags or {}})  # fmt: skip

    def start_trial(
        self,
        number: int,
        trial_id: str,
        params: dict[str, Any],
        tags: dict[str, str] | None = None,
        config: str | None = None,
    ) -> None:
        """params: the trial's settings; tags: bookkeeping; config: its config.yaml text."""
        self.submit({"op": "trial_start", "number": number, "trial_id": trial_id,
                     "params": params, "tags": tags or {}, "config": config})  # fmt: skip

    def retry_trial(self, number: int) -> None:
        """A FAILED trial is run again: its run is reopened (operations.apply_trial_retry)."""
        self.submit({"op": "trial_retry", "number": number})

    def check_name(self, name: str) -> None:
        """One study name, one study on a tracking server: ConfigError when the experiment
        `name` holds the study run of a study kept under another storage path."""
        try:
            exp = self.client.get_experiment_by_name(name)
            runs = [] if exp is None else self.client.search_runs(
                [exp.experiment_id], "tags.`dhkd.role` = 'study'", max_results=50
            )  # fmt: skip
        except Exception as exc:  # the server went down meanwhile: the outbox takes over
            log.warning("could not check the study name %s at %s: %s", name, self.uri, exc)
            return
        mine = str(self.paths.storage)
        for run in runs:
            tags = run.data.tags
            other = tags.get(STORAGE_TAG)
            if tags.get("dhkd.study_uid") != self.state["study_uid"] and other not in (None, mine):
                raise ConfigError(
                    f"a study named '{name}' already exists at {self.uri} with its files under "
                    f"{other}; pass --storage-path {other} to run or resume that study, or "
                    "--name NEW_NAME to start another one"
                )

    def log_history(self, number: int, key: str, values: list[float]) -> None:
        """One metric over a finished stage: values[i] at step i + 1 (e.g. train/teacher_nll)."""
        if values:
            self.submit({"op": "history", "key": f"trial:{number}", "metric": key,
                         "values": [float(v) for v in values],
                         "ts": int(time.time() * 1000)})  # fmt: skip

    def log_metrics(self, number: int, metrics: dict[str, float], step: int) -> None:
        if metrics:
            self.submit({"op": "metrics", "key": f"trial:{number}", "metrics": metrics,
                         "step": int(step), "ts": int(time.time() * 1000)})  # fmt: skip

    def end_trial(
        self,
        number: int,
        state: str | None,
        *,
        artifacts: str | None = None,
        error: str | None = None,
        tags: dict[str, str] | None = None,
        exclude: list[str] | None = None,
        inputs: list[dict[str, Any]] | None = None,
        metrics: dict[str, float] | None = None,
    ) -> None:
        """state None: interrupted (KILLED, resumable); else the final state (first one wins).
        exclude: artifact file names not to log; inputs: dataset inputs (fingerprint.py);
        metrics (e.g. the trial's compute) are logged with the final state."""
        self.submit({"op": "trial_end", "number": number, "state": state,
                     "artifacts": artifacts, "error": error, "tags": tags or {},
                     "exclude": exclude or [], "inputs": inputs or [],
                     "metrics": metrics or {}, "ts": int(time.time() * 1000)})  # fmt: skip

    def extend_trial(self, number: int, metrics: dict[str, float], tags: dict[str, str],
                     artifacts: str | None, step: int) -> None:  # fmt: skip
        """A finished trial's metrics over more units (an extended study), logged at `step`."""
        self.submit({"op": "trial_extend", "number": number, "metrics": metrics, "tags": tags,
                     "artifacts": artifacts, "step": int(step),
                     "ts": int(time.time() * 1000)})  # fmt: skip

    def end_study(
        self,
        status: str,
        metrics: dict[str, float],
        artifacts: str | None,
        note: str | None = None,
        best: int | None = None,
    ) -> None:
        """note: the study run's description, where `{best}` becomes a link to the run of
        trial `best` (resolved when the operation is applied, so a replay links it too)."""
        self.submit({"op": "study_end", "status": status, "metrics": metrics,
                     "artifacts": artifacts, "ts": int(time.time() * 1000),
                     "note": note, "best": best})  # fmt: skip

    def final_state(self, number: int) -> str | None:
        return self.state["runs"].get(str(number), {}).get("state")

    @property
    def pending(self) -> int:
        return len(self.outbox)

    # -- submission and replay ---------------------------------------------------------------
    def submit(self, op: dict[str, Any]) -> None:
        down = self._down_since is not None
        if down and (time.time() - self._last_try < RETRY_S or self.flush() > 0):
            self.outbox.append(op)
            return
        try:
            self._apply(op)
        except Exception as exc:
            if probe(self.client) is None:
                self._reject(op, exc)
                return
            self._down_since = self._last_try = time.time()
            log.warning("tracking server %s does not answer (%s); keeping results in %s",
                        self.uri, str(exc)[:200], self.paths.outbox)  # fmt: skip
            print(f"[dhkd] tracking at {self.uri} is down; results go to {self.paths.outbox}")
            self.outbox.append(op)

    def flush(self) -> int:
        """Replay the outbox; returns how many of the operations it took could not be sent
        (`sent` counts those that were)."""
        self._last_try = time.time()
        self.sent = 0

        def apply(op: dict[str, Any]) -> bool:
            try:
                self._apply(op)
                self.sent += 1
                return True
            except Exception as exc:
                if probe(self.client) is None:
                    self._reject(op, exc)
                    return True
                return False

        remaining = self.outbox.replay(apply, begin=self._reload)
        self._down_since = None if remaining == 0 else (self._down_since or time.time())
        return remaining

    def _reject(self, op: dict[str, Any], exc: Exception) -> None:
        text = f"{op.get('op')} {op.get('number', '')}: {str(exc)[:300]}"
        self.rejected.append(text)
        log.warning("tracking rejected an operation: %s", text)

    def _reload(self) -> None:
        """Take the state another process (a `dhkd study sync`) saved for this server."""
        saved = read_json(self.paths.tracking_state, None)
        if saved and saved.get("tracking_uri") == self.uri:
            self.state = saved

    def save(self) -> None:
        write_json(self.paths.tracking_state, self.state)

    # -- applying operations -----------------------------------------------------------------
    def _apply(self, op: dict[str, Any]) -> None:
        try:
            operation = OPERATIONS[op["op"]]
        except KeyError:
            raise DhkdError(f"unknown tracking operation {op.get('op')!r} in {op}") from None
        operation(self, op)
