"""The reference of a study (`reference: knn` in the spec): a plain method measured once per
(category, seed) under the study's selection protocol, beside the searched variants.

The driver measures it before the trials start (dhkd.training.fit.fit_units in its own process, no
search, no scheduler) on the study's units, with the study's data, backbone and score settings
(the `fixed` keys of those shared sections) and its selection protocol, so its validation and
test numbers are comparable with every trial's. Its outputs stay in <study>/reference/ (a resumed
study does not measure it again) and are logged to MLflow as one run nested under the study run
(tag dhkd.role=reference) with its compute (cost/* metrics, as a trial's); `dhkd report` shows
it as its own column of every table and figure and tests each variant against it.

Within a suite (dhkd/suite/run.py) the reference is measured once per (category, seed): a later
study with the same reference key gets a copy of the measuring study's folder (share_reference)
with source.json naming that study and its MLflow reference run; its own reference run then
carries those as tags (dhkd.reference.source_study, dhkd.reference.source_run) and no cost/*
metrics, the compute having been spent, and logged, once by the measuring run.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from dhkd.config import load_config
from dhkd.runs.layout import RunFolder
from dhkd.sections import TrainConfig
from dhkd.study.design.spec import StudySpec
from dhkd.study.state.layout import StudyPaths, digest
from dhkd.study.state.live import cost_metrics, on_gpu
from dhkd.study.state.outcome import COMPLETE, OBJECTIVE, tracked_metrics
from dhkd.study.tracking.provenance import provenance_of

SHARED_SECTIONS = ("data", "backbone", "score")  # settings a reference shares with the trials
REFERENCE_DIR = "reference"
COST_FILE = "cost.json"  # {wall_s, cpu_s, gpu_s, device} of the measurement
SOURCE_FILE = "source.json"  # {study, run_id}: the study and MLflow run that measured it
ROLE = "reference"
SOURCE_TAGS = {"study": "dhkd.reference.source_study", "run_id": "dhkd.reference.source_run"}


def reference_config(spec: StudySpec) -> TrainConfig:
    """The reference's config: its method's preset, the study's selection protocol and the
    study's fixed data / backbone / score keys (and optim.device)."""
    assert spec.reference is not None
    shared = {
        k: v
        for k, v in spec.fixed.items()
        if k.split(".")[0] in SHARED_SECTIONS or k == "optim.device"
    }
    selection = {f"selection.{k}": v for k, v in spec.selection.model_dump().items()}
    return load_config(spec.preset, overrides={"method": spec.reference, **selection, **shared})


def reference_dir(paths: StudyPaths) -> Path:
    return paths.dir / REFERENCE_DIR


def reference_key(spec: StudySpec) -> str | None:
    """What makes two studies' references the same measurement: the reference's config, the
    data and the (category, seed) units; None without a reference."""
    if spec.reference is None:
        return None
    roots = [str(r) for r in spec.data_roots()]
    data = spec.data.model_dump(mode="json")
    return digest([reference_config(spec).to_flat_dict(), data, roots, spec.units])


def share_reference(source: StudyPaths, paths: StudyPaths, run_id: str) -> None:
    """Give study `paths` the reference measured by study `source`, whose MLflow reference run
    is run_id: a copy of its outputs without their cost, and source.json naming both (in place
    of a reference the study had on fewer units)."""
    out = reference_dir(paths)
    tmp = out.with_name(f".{REFERENCE_DIR}-shared")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(reference_dir(source), tmp, ignore=shutil.ignore_patterns(COST_FILE))
    (tmp / SOURCE_FILE).write_text(json.dumps({"study": source.name, "run_id": run_id}))
    _swap_in(tmp, out)


def _swap_in(new: Path, out: Path) -> None:
    """Put folder `new` at `out`, replacing the folder there (renamed aside first, so an
    interruption leaves either the old folder or the new one at `out`, never a mix)."""
    old = out.with_name(f".{out.name}-old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.replace(old)
    new.replace(out)
    shutil.rmtree(old, ignore_errors=True)


def measured_units(paths: StudyPaths) -> set[tuple[str, int]]:
    """The (category, seed) units the study's reference folder holds (none: not measured)."""
    file = RunFolder(reference_dir(paths)).metrics
    if not file.is_file():
        return set()
    units = json.loads(file.read_text()).get("units") or []
    return {(str(u["category"]), int(u["seed"])) for u in units if "category" in u}


def covers(paths: StudyPaths, spec: StudySpec) -> bool:
    """Whether the study's reference was measured on every unit of `spec` (an extended study's
    is not, until it is measured again)."""
    return set(spec.units) <= measured_units(paths)


def reference_source(paths: StudyPaths) -> dict[str, str] | None:
    """{study, run_id} of the study that measured this study's reference; None when the study
    measured it itself (or has none yet)."""
    file = reference_dir(paths) / SOURCE_FILE
    return json.loads(file.read_text()) if file.is_file() else None


def measure_reference(
    spec: StudySpec, paths: StudyPaths, data_root: Path, cache_dir: str | None, quiet: bool
) -> dict[str, Any] | None:
    """Measure the reference unless <study>/reference/ holds it on every unit of the spec
    (measured, or shared by an earlier study of its suite; a study extended by seeds or
    categories measures it again on all its units); returns the tracking operation that logs
    it (None without a reference)."""
    if spec.reference is None:
        return None
    from dhkd.study.driver.trainable import device_name, node_feature_cache, objective_value
    from dhkd.training.fit import fit_units

    cfg = reference_config(spec)
    out = reference_dir(paths)
    done = RunFolder(out).metrics
    if not covers(paths, spec):
        if not quiet:
            print(f"[dhkd] measuring the reference {spec.reference} on {len(spec.units)} units")
        tmp = out.with_name(f".{REFERENCE_DIR}-partial")
        device = device_name(cfg.optim.device)
        start, cpu_start = time.perf_counter(), time.process_time()
        fit_units(cfg, data_root, spec.units, out_dir=tmp, progress=False,
                  feature_cache=node_feature_cache(cache_dir))  # fmt: skip
        wall = time.perf_counter() - start
        cost = {"wall_s": wall, "cpu_s": time.process_time() - cpu_start,
                "gpu_s": wall if on_gpu(device) else 0.0, "device": device}  # fmt: skip
        (tmp / COST_FILE).write_text(json.dumps(cost, indent=2))
        _swap_in(tmp, out)
    flat = json.loads(done.read_text())
    numbers = {k: v for k, v in flat.items() if isinstance(v, int | float)}
    cost_file = out / COST_FILE
    cost = json.loads(cost_file.read_text()) if cost_file.is_file() else {}
    categories = spec.data.category_names
    objective = objective_value(numbers, spec.objective.metric, categories)
    if objective is not None:
        numbers[OBJECTIVE] = objective
    op = {
        "op": "reference",
        "method": spec.reference,
        "params": cfg.to_flat_dict(),
        "metrics": tracked_metrics(numbers, spec.objective.metric),
        "artifacts": str(out),
        "units": sorted([c, s] for c, s in measured_units(paths)),  # logged again when they grow
        **provenance_of(str(out), COMPLETE, spec.weights_kept),
    }
    if cost:  # compute of the measurement: cost/* metrics and the device tag, as a trial's
        metrics, tags = cost_metrics(cost)
        op["metrics"].update(metrics)
        op["tags"] = {**op.get("tags", {}), **tags}
    source = reference_source(paths)
    if source is not None:
        op["tags"] = {**op.get("tags", {}), **{SOURCE_TAGS[k]: source[k] for k in SOURCE_TAGS}}
    return op
