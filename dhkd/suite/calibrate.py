"""`dhkd suite plan|run --calibrate`: measure the cost of the (method, preset) pairs a suite's
plan has no cost for, by training one (category, seed) unit of each on this machine.

What is measured, per missing (method, preset):

- one unit: the first seed of the first study that trains the method (as a trial method, else
  as its reference), on the category with the fewest training images among the suite's
  categories that lack a cost (the cheapest; the first of them where none can be counted);
- its config: the study's preset, selection protocol and `fixed` keys (for a reference, what
  the study's reference trains with: dhkd.study.driver.reference.reference_config), on the
  suite's data (generated or joined under the storage path as the study runner does);
- the training: dhkd.training.fit.fit_units, the function a study trial calls, writing its run
  folder into a temporary folder as a trial does, with torch on resources.cpus_per_trial
  threads, from an empty feature cache (as the first trial on a node: later trials that find the
  features cached cost less, so the figure is an upper bound), on the suite's kind of device:
  CUDA when resources.gpus_per_trial > 0 (refused without a GPU), else the CPU;
- wall seconds (time.perf_counter) and CPU seconds of this process (time.process_time), around
  the fit_units call, as the study trainable measures its trials.

Each measurement is appended to STORAGE/suites/<suite>-calibration.json, a list of
{method, preset, category, seed, wall_s, cpu_s, device, commit, measured_at}. A later plan reads
it (calibration_measurements) as a cost source between MLflow and the suite's costs table;
dhkd.suite.costs.CostBook scales it to the other categories by train-set size and keeps only
measurements on the suite's kind of device.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dhkd.errors import ConfigError
from dhkd.study.design.spec import StudySpec
from dhkd.suite.costs import Measurement
from dhkd.suite.spec import SuiteSpec, study_methods

SOURCE = "calibration"  # the cost source's name in the plan: "calibration: bottle"
Key = tuple[str, str, str]  # (method, preset, category)


class CalibrationRefused(ConfigError):
    """Calibration cannot measure what the suite's trials would use (a GPU, here)."""


@dataclass(frozen=True)
class CalibrationUnit:
    method: str
    preset: str
    category: str
    seed: int
    spec: StudySpec  # the study whose config and data it trains with
    reference: bool  # trained as the study's reference, not as a trial method


def calibration_path(storage: str | Path, suite_name: str) -> Path:
    """STORAGE/suites/<suite>-calibration.json (beside the suite summary)."""
    return Path(storage).expanduser().resolve() / "suites" / f"{suite_name}-calibration.json"


def read_calibrations(path: Path) -> list[dict[str, Any]]:
    """The records of a calibration file ([] where there is none)."""
    if not path.is_file():
        return []
    records = json.loads(path.read_text())
    if not isinstance(records, list):
        raise ConfigError(f"calibration file {path} must hold a list; remove it to calibrate anew")
    return records


def calibration_measurements(path: Path) -> list[Measurement]:
    """A calibration file's records as one-unit measurements, each of its category."""
    from dhkd.study.state.live import on_gpu

    return [
        Measurement(
            method=r["method"], preset=r["preset"],
            device="gpu" if on_gpu(r.get("device")) else "cpu",
            categories=(r["category"],), units=1,
            wall_s=float(r["wall_s"]),
            cpu_s=None if r.get("cpu_s") is None else float(r["cpu_s"]),
        )
        for r in read_calibrations(path)
    ]  # fmt: skip


def calibration_units(
    specs: list[StudySpec], missing: list[Key], train_size: Callable[[str], int | None]
) -> list[CalibrationUnit]:
    """One unit per (method, preset) of `missing` (the plan's keys without a cost)."""

    pairs: dict[tuple[str, str], list[str]] = {}
    for method, preset, category in missing:
        pairs.setdefault((method, preset), []).append(category)
    units = []
    for (method, preset), categories in pairs.items():
        found = None
        for spec in specs:
            if spec.preset != preset:
                continue
            if method in study_methods(spec):
                found = (spec, False)
                break
            if spec.reference == method:
                found = (spec, True)
                break
        if found is None:  # cannot happen for keys of a plan of these specs
            raise ConfigError(f"no study of the suite trains {method} at preset {preset}")
        spec, reference = found
        names = [c for c in spec.data.category_names if c in categories]
        names = names or spec.data.category_names
        sizes = {c: train_size(c) for c in names}
        cheapest = min(names, key=lambda c: (sizes[c] is None, sizes[c] or 0))
        units.append(CalibrationUnit(method, preset, cheapest, spec.seeds[0], spec, reference))
    return units


def require_device(suite: SuiteSpec, verb: str = "plan") -> str:
    """The torch device the suite's trials use here ("cuda" or "cpu"); CalibrationRefused when
    they ask for a GPU and none is visible."""
    import torch

    if suite.device != "gpu":
        return "cpu"
    if not torch.cuda.is_available():
        raise CalibrationRefused(
            f"cannot calibrate: the suite's trials ask for a GPU (resources.gpus_per_trial "
            f"{suite.resources.gpus_per_trial:g}) and this machine has none, so the costs must be "
            f"measured on a GPU node: run `dhkd suite {verb} {suite.source} --calibrate` there "
            "(with the same --storage-path), or add them to the suite's costs: table"
        )
    return "cuda"


def _commit() -> str:
    from dhkd.fingerprint import code_state

    state = code_state()
    return state["commit"] + ("-dirty" if state.get("dirty") else "")


def measure_unit(
    unit: CalibrationUnit, suite: SuiteSpec, device: str, storage: str | Path
) -> dict[str, Any]:
    """Train one calibration unit (see the module docstring); its record."""
    import torch

    import dhkd.training.fit
    from dhkd.features import FeatureCache
    from dhkd.study.driver.reference import reference_config
    from dhkd.study.driver.runner import resolve_data
    from dhkd.study.driver.trainable import device_name
    from dhkd.study.state.layout import StudyPaths

    spec = unit.spec
    cfg = reference_config(spec) if unit.reference else spec.trial_config({"method": unit.method})
    cfg = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"device": device})})
    data_root = resolve_data(spec, StudyPaths(Path(storage).expanduser().resolve(), spec.name))
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(suite.resources.cpus_per_trial)))
    try:
        with tempfile.TemporaryDirectory(prefix="dhkd-calibrate-") as tmp:
            cache = FeatureCache(Path(tmp) / "features", max_memory_items=8)
            start, cpu_start = time.perf_counter(), time.process_time()
            dhkd.training.fit.fit_units(cfg, data_root, [(unit.category, unit.seed)],
                                        out_dir=Path(tmp) / "run", feature_cache=cache,
                                        progress=False)  # fmt: skip
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    finally:
        torch.set_num_threads(threads)
    return {
        "method": unit.method, "preset": unit.preset, "category": unit.category,
        "seed": unit.seed, "wall_s": wall, "cpu_s": cpu, "device": device_name(device),
        "commit": _commit(), "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip


def _append(path: Path, record: dict[str, Any]) -> None:
    records = [*read_calibrations(path), record]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(records, indent=2) + "\n")
    tmp.replace(path)


def calibrate_missing(
    suite: SuiteSpec,
    specs: list[StudySpec],
    missing: list[Key],
    storage: str | Path,
    train_size: Callable[[str], int | None],
    *,
    verb: str = "plan",
    say: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Measure one unit per (method, preset) of `missing`, appending each record to the suite's
    calibration file as soon as it is measured; the new records. CalibrationRefused before
    training anything when the suite asks for a GPU and this machine has none."""
    if not missing:
        return []
    device = require_device(suite, verb)
    path = calibration_path(storage, suite.name)
    records = []
    for unit in calibration_units(specs, missing, train_size):
        role = " (reference)" if unit.reference else ""
        say(f"[dhkd] calibrating {unit.method}/{unit.preset}{role} on {unit.category} "
            f"(seed {unit.seed}) ...")  # fmt: skip
        record = measure_unit(unit, suite, device, storage)
        _append(path, record)
        records.append(record)
        say(f"[dhkd] calibrated {unit.method}/{unit.preset} on {unit.category}: "
            f"{record['wall_s']:.1f} s wall, {record['cpu_s']:.1f} s CPU "
            f"on {record['device']}")  # fmt: skip
    say(f"[dhkd] calibration: {len(records)} unit(s) measured, in {path}")
    return records
