"""The reference of a study (`reference: knn` in the spec): a plain method measured once per
(category, seed) under the study's selection protocol, beside the searched variants.

The driver measures it before the trials start (dhkd.training.fit.fit_units in its own process, no
search, no scheduler) on the study's units, with the study's data, backbone and score settings
(the `fixed` keys of those shared sections) and its selection protocol, so its validation and
test numbers are comparable with every trial's. Its outputs stay in <study>/reference/ (a resumed
study does not measure it again) and are logged to MLflow as one run nested under the study run
(tag dhkd.role=reference) with its compute (cost/* metrics, as a trial's); `dhkd report` shows
it as its own column of every table and figure and tests each variant against it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from dhkd.config import load_config
from dhkd.runs.layout import RunFolder
from dhkd.sections import TrainConfig
from dhkd.study.design.spec import StudySpec
from dhkd.study.state.layout import StudyPaths
from dhkd.study.state.live import cost_metrics, on_gpu
from dhkd.study.state.outcome import COMPLETE, OBJECTIVE, tracked_metrics
from dhkd.study.tracking.provenance import provenance_of

SHARED_SECTIONS = ("data", "backbone", "score")  # settings a reference shares with the trials
REFERENCE_DIR = "reference"
COST_FILE = "cost.json"  # {wall_s, cpu_s, gpu_s, device} of the measurement
ROLE = "reference"


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


def measure_reference(
    spec: StudySpec, paths: StudyPaths, data_root: Path, cache_dir: str | None, quiet: bool
) -> dict[str, Any] | None:
    """Measure the reference unless <study>/reference/metrics.json exists; returns the tracking
    operation that logs it (None without a reference)."""
    if spec.reference is None:
        return None
    from dhkd.study.driver.trainable import device_name, node_feature_cache, objective_value
    from dhkd.training.fit import fit_units

    cfg = reference_config(spec)
    out = reference_dir(paths)
    done = RunFolder(out).metrics
    if not done.is_file():
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
        tmp.replace(out)
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
        **provenance_of(str(out), COMPLETE, spec.weights_kept),
    }
    if cost:  # compute of the measurement: cost/* metrics and the device tag, as a trial's
        metrics, tags = cost_metrics(cost)
        op["metrics"].update(metrics)
        op["tags"] = {**op.get("tags", {}), **tags}
    return op
