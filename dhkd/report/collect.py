"""Read one study back from MLflow: its study run, its spec, and one record per trial run.

The layout is the one dhkd.study.tracking writes: an experiment named after the study, a study
run (tag dhkd.role=study; params `spec.*` hold the spec, JSON-encoded where nested; artifact
spec.yaml once the study ended) and a nested run per Optuna trial (tags dhkd.role=trial,
optuna_trial_number, state, dhkd.searched / categories / seeds; params = the flat TrainConfig;
metrics `val/[<category>/]<metric>` and `objective/<metric>` per evaluation epoch, `test/...`
once at the end; artifacts metrics.json and maps_*.png).
Everything here needs the tracking URI only, never the study's storage folder.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dhkd.errors import DhkdError
from dhkd.runs.layout import RunFolder
from dhkd.runs.tracking import DEFAULT_TRACKING_URI, client_for

METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")
COMPLETE = "COMPLETE"


@dataclass
class Trial:
    """One trial run. `metrics` are MLflow's latest values (the final epoch for COMPLETE)."""

    run_id: str
    number: int
    state: str  # COMPLETE | PRUNED | FAILED | RUNNING | INTERRUPTED
    params: dict[str, str]
    metrics: dict[str, float]
    searched: list[str]
    units: list[dict[str, Any]] | None = None  # metrics.json "units", loaded on demand
    tags: dict[str, str] = field(default_factory=dict)  # bookkeeping: dhkd.seeds, provenance

    def metric(self, key: str) -> float | None:
        return self.metrics.get(key)


@dataclass
class StudyData:
    name: str
    tracking_uri: str
    experiment_id: str
    study_run_id: str
    spec: dict[str, Any]  # scientific, nuisance, objective {metric, mode}, seeds, description
    categories: list[str]
    trials: list[Trial]
    notes: list[str] = field(default_factory=list)
    reference: Trial | None = None  # the spec's reference run (tag dhkd.role=reference)

    @property
    def protocol(self) -> str:
        """The selection protocol that chose every column (synthetic | test_fold | test)."""
        return str(self.spec.get("selection") or "synthetic")

    @property
    def complete(self) -> list[Trial]:
        return [t for t in self.trials if t.state == COMPLETE]

    @property
    def objective(self) -> tuple[str, str]:
        obj = self.spec.get("objective") or {}
        return obj.get("metric", "pixel_aupro"), obj.get("mode", "max")

    def objective_value(self, trial: Trial) -> float | None:
        """The study objective of a trial (a validation metric): MLflow metric
        `objective/<metric>`, else the mean of `val/<category>/<metric>` over the categories
        (None if one is missing). Test metrics never choose."""
        metric = self.objective[0]
        value = trial.metric(f"objective/{metric}")
        if value is not None:
            return value
        values = [trial.metric(f"val/{c}/{metric}") for c in self.categories]
        if not values or any(v is None for v in values):
            return None
        return sum(values) / len(values)


def list_studies(client) -> list[str]:
    """Names of the experiments that hold a dhkd study (tag dhkd.study)."""
    return sorted(e.name for e in client.search_experiments() if "dhkd.study" in e.tags)


def _search_all(client, experiment_id: str, query: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=query, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _spec_from_params(params: dict[str, str]) -> dict[str, Any] | None:
    """The spec from the study run's `spec.*` params (nested values are JSON)."""
    if "spec.name" not in params:
        return None

    def load(key: str, default: Any) -> Any:
        raw = params.get(key)
        if raw is None:
            return default
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw

    return {
        "name": params["spec.name"],
        "description": params.get("spec.description", "").strip(),
        "scientific": load("spec.scientific", {}),
        "nuisance": load("spec.nuisance", {}),
        "objective": {
            "metric": params.get("spec.objective.metric", "pixel_aupro"),
            "mode": params.get("spec.objective.mode", "max"),
        },
        "seeds": load("spec.seeds", [0]),
        "sampler": params.get("spec.sampler.type"),
        "preset": params.get("spec.preset"),
        "method": params.get("spec.method"),
        "selection": params.get("spec.selection.protocol", "synthetic"),
        "reference": params.get("spec.reference"),
    }


def _spec_from_artifact(client, run_id: str) -> dict[str, Any] | None:
    names = {a.path for a in client.list_artifacts(run_id)}
    if "spec.yaml" not in names:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        tree = yaml.safe_load(Path(client.download_artifacts(run_id, "spec.yaml", tmp)).read_text())
    selection = (tree.get("selection") or {}).get("protocol", "synthetic")
    description = str(tree.get("description", "")).strip()
    return {**tree, "description": description, "selection": selection}


def _trial(run) -> Trial | None:
    tags = run.data.tags
    try:
        number = int(tags.get("optuna_trial_number", ""))
    except ValueError:
        return None
    searched = [k for k in tags.get("dhkd.searched", "").split(",") if k]
    return Trial(
        run.info.run_id,
        number,
        tags.get("state", "RUNNING"),
        dict(run.data.params),
        dict(run.data.metrics),
        searched,
        tags=dict(tags),
    )


def _study_run(client, exp, name: str, notes: list[str]):
    runs = _search_all(client, exp.experiment_id, "tags.`dhkd.role` = 'study'")
    if not runs:
        raise DhkdError(
            f"experiment '{name}' has no study run (tag dhkd.role=study): it was not "
            "written by `dhkd study run`"
        )
    runs.sort(key=lambda r: r.info.start_time or 0, reverse=True)
    if len(runs) > 1:
        notes.append(
            f"{len(runs)} study runs in experiment '{name}'; reporting the latest "
            f"({runs[0].info.run_id})"
        )
    return runs[0]


def load_study(name: str, tracking_uri: str = DEFAULT_TRACKING_URI) -> StudyData:
    """Read study `name` from MLflow. Raises DhkdError for an unknown study (listing the known
    ones) and for a study without any COMPLETE trial."""
    client, uri = client_for(tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is None or exp.lifecycle_stage == "deleted":
        known = list_studies(client)
        listed = ", ".join(known) if known else "none yet (run `dhkd study run SPEC` first)"
        raise DhkdError(f"no study named '{name}' at {uri}; studies there: {listed}")
    notes: list[str] = []
    study_run = _study_run(client, exp, name, notes)
    study_id = study_run.info.run_id
    spec = None
    if study_run.data.tags.get("dhkd.extended"):  # params keep the first spec: read the last
        spec = _spec_from_artifact(client, study_id)
    spec = spec or _spec_from_params(study_run.data.params) or _spec_from_artifact(client, study_id)
    if spec is None:
        raise DhkdError(
            f"the study run {study_id} of '{name}' has neither spec.* params nor a "
            "spec.yaml artifact; it was not written by `dhkd study run`"
        )
    query = f"tags.`mlflow.parentRunId` = '{study_id}'"
    trials = [t for r in _search_all(client, exp.experiment_id, query) if (t := _trial(r))]
    trials.sort(key=lambda t: t.number)
    reference = _reference(client, exp.experiment_id, study_id)
    cats = _categories(spec, trials)
    return _checked(
        StudyData(name, uri, exp.experiment_id, study_id, spec, cats, trials, notes, reference)
    )


def _reference(client, experiment_id: str, study_id: str) -> Trial | None:
    """The study's reference run (measured once, dhkd.study.driver.reference) as a COMPLETE Trial
    numbered -1; None when the spec names no reference or it was not logged."""
    query = f"tags.`mlflow.parentRunId` = '{study_id}' and tags.`dhkd.role` = 'reference'"
    runs = [r for r in _search_all(client, experiment_id, query)
            if r.data.tags.get("state") == COMPLETE]  # fmt: skip
    if not runs:
        return None
    run = runs[0]
    return Trial(run.info.run_id, -1, COMPLETE, dict(run.data.params), dict(run.data.metrics), [],
                 tags=dict(run.data.tags))  # fmt: skip


def _categories(spec: dict[str, Any], trials: list[Trial]) -> list[str]:
    listed = [t.tags["dhkd.categories"].split(",") for t in trials
              if t.tags.get("dhkd.categories")]  # fmt: skip
    if listed:  # an extended study: the latest trials name every category
        return max(listed, key=len)
    data = spec.get("data") or {}
    return list((data.get("synthetic") or {}).get("categories") or data.get("categories") or [])


def _checked(data: StudyData) -> StudyData:
    if not data.complete:
        counts: dict[str, int] = {}
        for t in data.trials:
            counts[t.state] = counts.get(t.state, 0) + 1
        found = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trial runs"
        how = "let it finish or resume it with the same `dhkd study run` command"
        if counts.get("FAILED"):
            how = ("fix what made its trials fail (the `error` tag of their runs) and run them "
                   "again with `dhkd study run SPEC --retry-failed`")  # fmt: skip
        raise DhkdError(
            f"study '{data.name}' has no COMPLETE trial yet ({found}); {how}, then report again"
        )
    return data


def load_units(data: StudyData, trial: Trial) -> list[dict[str, Any]] | None:
    """Per-(category, seed) metrics of a trial from its metrics.json artifact (cached)."""
    if trial.units is not None:
        return trial.units or None
    client, _ = client_for(data.tracking_uri)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(trial.run_id, RunFolder.METRICS, tmp)
            units = json.loads(Path(path).read_text()).get("units")
    except Exception:  # no artifact (older run, or logging failed): seed spread unknown
        units = None
    trial.units = units if isinstance(units, list) else []
    return trial.units or None


def kept_weights(data: StudyData) -> tuple[int, int]:
    """(trials that kept their weights, total bytes of those checkpoint.pt artifacts)."""
    client, _ = client_for(data.tracking_uri)
    sizes = [
        a.file_size or 0
        for t in data.trials
        for a in client.list_artifacts(t.run_id)
        if a.path == RunFolder.CHECKPOINT
    ]
    return len(sizes), sum(sizes)


def download_maps(data: StudyData, trial: Trial, out: Path) -> list[Path]:
    """The maps_<category>_s<seed>.png grid of each category (its lowest seed) of a trial,
    copied to `out`, in the study's category order."""
    client, _ = client_for(data.tracking_uri)
    names = [a.path for a in client.list_artifacts(trial.run_id)]
    first: dict[str, tuple[int, str]] = {}
    for name in names:
        unit = RunFolder.parse_maps_name(name)
        if unit and (unit[0] not in first or unit[1] < first[unit[0]][0]):
            first[unit[0]] = (unit[1], name)
    order = [c for c in data.categories if c in first] + sorted(set(first) - set(data.categories))
    out.mkdir(parents=True, exist_ok=True)
    return [Path(client.download_artifacts(trial.run_id, first[c][1], str(out))) for c in order]
