"""From a logged run back to its model and its numbers: fetch kept weights, reproduce a run.

A run is a `dhkd train` output folder or an MLflow run of a study trial; both hold config.yaml
(the resolved config), fingerprint.json (code, versions, device, threads of training and of
feature extraction, data root and per-category data hashes, units) and their metrics.
`reproduce` rebuilds the config and the data selection, computes the features with the threads
the run's were computed with, trains again on this machine and compares metric by metric; when
they differ it names the fingerprint part that changed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dhkd.errors import DataError, DhkdError
from dhkd.fingerprint import dataset_inputs, fingerprint_tags
from dhkd.study.state.outcome import COMPLETE
from dhkd.weights import WEIGHTS_FILE

CONFIG_FILE = "config.yaml"
FINGERPRINT_FILE = "fingerprint.json"  # dhkd.train.FINGERPRINT_FILE
TOLERANCE = 1e-6


def provenance_of(folder: str | None, state: str, keep: str) -> dict[str, Any]:
    """Tracking arguments from a finished run's output folder (a trial's or the reference's):
    fingerprint tags, dataset inputs, and the weights left out unless keep_weights keeps them
    for this state."""
    out: dict[str, Any] = {"tags": {}, "inputs": [], "exclude": []}
    if folder is None:
        return out
    kept = keep == "all" or (keep == "complete" and state == COMPLETE)
    if not kept:
        out["exclude"] = [WEIGHTS_FILE]
    fp_file = Path(folder) / FINGERPRINT_FILE
    if fp_file.is_file():
        fp = json.loads(fp_file.read_text())
        out["tags"] = fingerprint_tags(fp)
        out["inputs"] = dataset_inputs(fp)
    return out


@dataclass
class LoggedRun:
    label: str  # the folder or "run <id>"
    config: dict[str, Any]
    fingerprint: dict[str, Any]
    metrics: dict[str, float]


@dataclass
class Reproduction:
    logged: LoggedRun
    metrics: dict[str, float]  # reproduced
    fingerprint: dict[str, Any]  # of the reproduction
    rows: list[tuple[str, float, float]] = field(default_factory=list)  # key, logged, now
    differences: list[str] = field(default_factory=list)  # fingerprint lines

    @property
    def max_diff(self) -> float:
        return max((abs(a - b) for _, a, b in self.rows), default=0.0)

    @property
    def agrees(self) -> bool:
        return bool(self.rows) and self.max_diff <= TOLERANCE


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
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        raise DataError(f"{folder} holds no {CONFIG_FILE}: pass the --out folder of `dhkd train`")
    return LoggedRun(
        label=str(folder),
        config=yaml.safe_load((folder / CONFIG_FILE).read_text()),
        fingerprint=_read_json(folder / FINGERPRINT_FILE, "what produced the run"),
        metrics=_logged_metrics(_read_json(folder / "metrics.json", "its metrics")),
    )


def _client(uri: str):
    from dhkd.report.collect import client_for

    return client_for(uri)[0]


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
    client = _client(uri)
    run = _get_run(client, run_id)
    config = yaml.safe_load(_download(client, run, CONFIG_FILE, workdir).read_text())
    fingerprint = json.loads(_download(client, run, FINGERPRINT_FILE, workdir).read_text())
    return LoggedRun(f"run {run_id}", config, fingerprint, _logged_metrics(run.data.metrics))


def fetch_weights(run_id: str, uri: str, workdir: str | Path) -> Path:
    """The checkpoint.pt an MLflow run kept, downloaded into workdir."""
    client = _client(uri)
    return _download(client, _get_run(client, run_id), WEIGHTS_FILE, workdir)


def load_run(ref: str, uri: str, workdir: str | Path) -> LoggedRun:
    """A run folder when `ref` is one, else an MLflow run id."""
    if Path(ref).is_dir():
        return run_from_dir(ref)
    return run_from_mlflow(ref, uri, workdir)


def reproduce(
    logged: LoggedRun,
    *,
    data_root: str | Path | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> Reproduction:
    """Train the logged run again here and compare its metrics."""
    import torch

    from dhkd.config import build_config
    from dhkd.features import FeatureCache
    from dhkd.fingerprint import compare
    from dhkd.train import fit_units

    cfg = build_config(logged.config)
    fp = logged.fingerprint
    root = Path(data_root or fp["data"]["root"])
    if not root.is_dir():
        raise DataError(
            f"the run's data root {root} does not exist here; pass --data ROOT of the same dataset"
        )
    units = [(str(c), int(s)) for c, s in fp["units"]]
    threads = torch.get_num_threads()
    torch.set_num_threads(int(fp.get("threads") or threads))
    try:
        result = fit_units(
            cfg,
            root,
            units,
            out_dir=out_dir,
            # features from the files now, with the threads that computed the logged run's
            feature_cache=FeatureCache("", max_memory_items=0, threads=_threads(fp)),
            progress=progress,
        )
    finally:
        torch.set_num_threads(threads)
    now = result["metrics"]
    rows = [(k, v, now[k]) for k, v in sorted(logged.metrics.items()) if k in now]
    rep = Reproduction(logged, now, result["fingerprint"], rows)
    if data_root is not None:  # another folder on purpose: compare contents only
        rep.fingerprint["data"]["root"] = fp["data"]["root"]
    rep.differences = compare(fp, rep.fingerprint)
    return rep


def _threads(fp: dict) -> dict[str, int]:
    """The fingerprint's feature threads ({"<category>/<split>": n}); {} for runs logged before
    they were recorded, or where unknown."""
    return {k: int(v) for k, v in (fp.get("feature_threads") or {}).items() if v}


def format_reproduction(rep: Reproduction) -> str:
    lines = [f"{'metric':<34} {'logged':>12} {'reproduced':>12} {'diff':>10}"]
    for key, a, b in rep.rows:
        diff = abs(a - b) if math.isfinite(a) and math.isfinite(b) else float("nan")
        lines.append(f"{key:<34} {a:>12.6f} {b:>12.6f} {diff:>10.2e}")
    if not rep.rows:
        lines.append("(no metric of the logged run to compare)")
    if rep.agrees:
        lines.append(f"reproduced: every metric within {TOLERANCE:g} of {rep.logged.label}")
    else:
        lines.append(
            f"NOT reproduced: largest difference {rep.max_diff:.3g} (tolerance {TOLERANCE:g})"
        )
    if rep.differences:
        lines.append("what differs from the logged run:")
        lines += [f"  {line}" for line in rep.differences]
    elif not rep.agrees:
        lines.append("the fingerprints agree (same code, data, device, versions, threads)")
    return "\n".join(lines)
