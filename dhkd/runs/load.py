"""A logged run read back: a `dhkd train` output folder or the MLflow run of a study trial.

Both hold config.yaml (the resolved config), fingerprint.json (code, versions, device, threads,
data root and per-category data hashes, units) and their metrics; a trial keeps its weights
(checkpoint.pt) when the spec's keep_weights says so. `load_run` reads what a run logged,
`fetch_weights` downloads the weights a trial kept.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dhkd.errors import DataError, DhkdError
from dhkd.runs.layout import RunFolder
from dhkd.runs.tracking import client_for

RUN_ID = re.compile(r"[0-9a-f]{32}")


@dataclass
class LoggedRun:
    label: str  # the folder or "run <id>"
    config: dict[str, Any]
    fingerprint: dict[str, Any]
    metrics: dict[str, float]


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path.parent} has no {path.name} ({what}); it is not a dhkd run")
    return json.loads(path.read_text())


def _logged_metrics(flat: dict[str, Any]) -> dict[str, float]:
    """The validation and test metrics ("val/...", "test/..."): what a retraining must match."""
    return {
        k: float(v)
        for k, v in flat.items()
        if isinstance(v, (int, float)) and k.startswith(("val/", "test/"))
    }


def run_from_dir(folder: str | Path) -> LoggedRun:
    """A `dhkd train` output folder."""
    run = RunFolder(folder)
    if not run.config.is_file():
        raise DataError(
            f"{run.root} holds no {RunFolder.CONFIG}: pass the --out folder of `dhkd train`"
        )
    return LoggedRun(
        label=str(run.root),
        config=yaml.safe_load(run.config.read_text()),
        fingerprint=_read_json(run.fingerprint, "what produced the run"),
        metrics=_logged_metrics(_read_json(run.metrics, "its metrics")),
    )


def _get_run(client, run_id: str):
    try:
        return client.get_run(run_id)
    except Exception as exc:
        raise DhkdError(
            f"no MLflow run {run_id} at this tracking URI ({str(exc).splitlines()[0][:200]}); "
            "copy the run id from provenance.csv or the MLflow UI and pass --tracking-uri"
        ) from None


def _download(client, run, name: str, dest: str | Path) -> Path:
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    if name not in names:
        state = run.data.tags.get("state", run.info.status)
        raise DhkdError(
            f"run {run.info.run_id} ({state}) has no artifact {name}: studies keep the weights "
            "and outputs of COMPLETE trials (spec keep_weights: complete | all | none)"
        )
    return Path(client.download_artifacts(run.info.run_id, name, str(dest)))


def run_from_mlflow(run_id: str, uri: str, workdir: str | Path) -> LoggedRun:
    client = client_for(uri)[0]
    run = _get_run(client, run_id)
    config = yaml.safe_load(_download(client, run, RunFolder.CONFIG, workdir).read_text())
    fingerprint = json.loads(_download(client, run, RunFolder.FINGERPRINT, workdir).read_text())
    return LoggedRun(f"run {run_id}", config, fingerprint, _logged_metrics(run.data.metrics))


def fetch_weights(run_id: str, uri: str, workdir: str | Path) -> Path:
    """The checkpoint.pt an MLflow run kept, downloaded into workdir."""
    client = client_for(uri)[0]
    return _download(client, _get_run(client, run_id), RunFolder.CHECKPOINT, workdir)


def load_run(ref: str, uri: str, workdir: str | Path) -> LoggedRun:
    """A run folder when `ref` is one, else an MLflow run id."""
    if Path(ref).is_dir():
        return run_from_dir(ref)
    if not RUN_ID.fullmatch(ref):
        what = "is a file" if Path(ref).exists() else "does not exist"
        raise DataError(
            f"{ref} {what}, and is not an MLflow run id (32 hex digits); pass the --out folder "
            "of `dhkd train` or the run id of a study trial (from a report's provenance.csv)"
        )
    return run_from_mlflow(ref, uri, workdir)
