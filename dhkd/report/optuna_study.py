"""The study as an Optuna study, for parameter importances and the optimisation history.

Source 1 (when --storage-path is given and <storage>/<name>/study/optuna.db exists): the
persistent study the searcher used, read from a temporary copy so the report never writes to it.
Source 2 (always available): an in-memory study rebuilt from MLflow: one trial per trial run
with the parameters the search suggested (tag `dhkd.searched`), parsed with the spec's
distributions, the final `objective/<metric>` (validation) as value, and its per-epoch history as
intermediate values; PRUNED and FAILED runs keep their state.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from dhkd.report.collect import StudyData
from dhkd.report.select import parse_value

STATES = {"COMPLETE": "COMPLETE", "PRUNED": "PRUNED", "FAILED": "FAIL"}


def distribution(param: dict[str, Any]):
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    kind = param.get("type")
    if kind == "categorical":
        return CategoricalDistribution(list(param["values"]))
    if kind == "int":
        return IntDistribution(
            int(param["low"]),
            int(param["high"]),
            log=bool(param.get("log")),
            step=int(param.get("step") or 1),
        )
    return FloatDistribution(
        float(param["low"]),
        float(param["high"]),
        log=bool(param.get("log")),
        step=param.get("step"),
    )


def space(data: StudyData) -> dict[str, dict[str, Any]]:
    return {**(data.spec.get("scientific") or {}), **(data.spec.get("nuisance") or {})}


def _history(client, run_id: str, metric: str) -> dict[int, float]:
    values = {}
    for m in client.get_metric_history(run_id, f"objective/{metric}"):
        if math.isfinite(m.value):
            values[int(m.step)] = float(m.value)
    return values


def rebuild_from_mlflow(data: StudyData) -> tuple[Any, list[str]]:
    """An in-memory optuna.Study with every final trial of `data`; returns (study, notes)."""
    import optuna
    from optuna.trial import TrialState, create_trial

    from dhkd.runs.tracking import client_for

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    client, _ = client_for(data.tracking_uri)
    direction = "maximize" if data.objective[1] == "max" else "minimize"
    study = optuna.create_study(study_name=data.name, direction=direction)
    dists = {k: distribution(p) for k, p in space(data).items()}
    notes: list[str] = []
    for t in data.trials:
        if t.state not in STATES:
            continue
        params, used = {}, {}
        for key in t.searched or [k for k in dists if k in t.params]:
            if key not in dists or key not in t.params:
                continue
            try:
                params[key] = parse_value(t.params[key], space(data)[key])
            except ValueError as exc:
                notes.append(f"trial #{t.number}: {key} left out of the Optuna study ({exc})")
                continue
            used[key] = dists[key]
        value = data.objective_value(t) if t.state == "COMPLETE" else None
        state = TrialState[STATES[t.state]]
        if state == TrialState.COMPLETE and (value is None or not math.isfinite(value)):
            notes.append(f"trial #{t.number} is COMPLETE without an objective; left out")
            continue
        frozen = create_trial(
            params=params,
            distributions=used,
            value=value,
            intermediate_values=_history(client, t.run_id, data.objective[0]),
            state=state,
            user_attrs={"number": t.number, "run_id": t.run_id},
        )
        study.add_trial(frozen)
    return study, notes


def load_optuna_db(data: StudyData, storage_path: str | Path) -> tuple[Any, list[str]] | None:
    """The study's own optuna.db (read from a copy), or None when it is not there."""
    import optuna

    db = Path(storage_path).expanduser() / data.name / "study" / "optuna.db"
    if not db.is_file():
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="dhkd-report-optuna-"))
    shutil.copy(db, tmp / "optuna.db")
    try:
        study = optuna.load_study(study_name=data.name, storage=f"sqlite:///{tmp / 'optuna.db'}")
        study = _in_memory(study)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    notes = [f"Optuna study read from {db} ({len(study.trials)} trials)"]
    finished = sum(t.state.is_finished() for t in study.trials)
    tracked = sum(t.state in STATES for t in data.trials)
    if finished != tracked:
        notes.append(
            f"optuna.db has {finished} finished trials, MLflow {tracked} final runs; "
            "the figures follow optuna.db"
        )
    return study, notes


def _in_memory(study):
    import optuna

    copy = optuna.create_study(study_name=study.study_name, directions=study.directions)
    copy.add_trials(study.get_trials(deepcopy=True))
    return copy


def optuna_study(data: StudyData, storage_path: str | Path | None = None):
    """(study, source, notes): optuna.db when reachable, else rebuilt from MLflow."""
    if storage_path is not None:
        loaded = load_optuna_db(data, storage_path)
        if loaded is not None:
            return loaded[0], "optuna.db", loaded[1]
        missing = not Path(storage_path).expanduser().is_dir()
        where = f"--storage-path {storage_path} does not exist" if missing else (
            f"no optuna.db for '{data.name}' under {storage_path}")  # fmt: skip
        note = f"{where}; rebuilt from MLflow"
        study, notes = rebuild_from_mlflow(data)
        return study, "mlflow", [note, *notes]
    study, notes = rebuild_from_mlflow(data)
    return study, "mlflow", notes
