"""Extending a study: more trials, more seeds or more categories, keeping every finished trial.

`dhkd study run SPEC --extend` accepts a spec whose only differences from the study's are
extensions (spec.spec_differences); anything else is refused with the list of differences.
- More trials: the new trials are asked for, as in any study.
- More seeds or categories: every COMPLETE trial trains the new (category, seed) units only,
  with its own parameters (a "top-up": a Tune trial whose config names its units), and its
  metrics become the means over all its units: per category the mean over its seeds, overall
  the mean over units, the objective the mean over categories. PRUNED and FAILED trials keep
  what they had.
Per trial, live.json keeps the units it trained (`units`), its final metrics over them
(`final`) and its per-unit rows (`unit_rows`, as in metrics.json). Optuna keeps a trial's first
value (it does not change finished trials); the summary, `dhkd study status` and the MLflow run
(the merged metrics logged at the final step, later than the first ones, so MLflow's latest
values and the reports are the merged ones) use the merged metrics.
An extension runs a new Tune experiment in the study folder (Tune cannot add trials to a
restored one): trials an interrupted driver left unfinished start again from their first epoch,
so resume an interrupted study before extending it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from dhkd.errors import ConfigError
from dhkd.runs.layout import RunFolder
from dhkd.study.design.spec import StudySpec, spec_differences
from dhkd.study.design.units import Unit, as_units
from dhkd.study.state.layout import StudyPaths, read_json, write_json
from dhkd.study.state.live import live_path, read_live


def check_extension(old: StudySpec, new: StudySpec, extend: bool, folder: Path) -> list[str]:
    """The extensions from `old` to `new` (the study kept in `folder`); ConfigError naming
    every difference and the folder unless the change is an extension and `extend` is set."""
    extensions, others = spec_differences(old, new)
    if others or not extend:
        listed = "\n  ".join(others + extensions)
        if others:
            how = (
                "--extend accepts only more trials (num_samples), more seeds or more "
                "categories; pass --name NEW_NAME to start another study, or delete "
                f"{folder} to start this one again"
            )
        else:
            how = "pass --extend to add this work to the study, keeping every finished trial"
        raise ConfigError(
            f"a study named '{new.name}' already exists in {folder} with a different spec:"
            f"\n  {listed}\n{how}"
        )
    return extensions


def record_extension(paths: StudyPaths, old: StudySpec, new: StudySpec, lines: list[str]) -> None:
    """Before the new spec replaces the old: every finished trial without a unit record gets the
    old spec's units; with new units, every COMPLETE trial must have its final metrics."""
    import optuna

    live = read_live(paths)
    study = optuna.load_study(study_name=old.name, storage=paths.optuna_url)
    new_units = set(new.units) - set(old.units)
    for t in study.get_trials(deepcopy=False):
        if not t.state.is_finished():
            continue
        rec = live["trials"].setdefault(str(t.number), {"attempts": {}, "status": t.state.name})
        rec.setdefault("units", [list(u) for u in old.units])
        if new_units and t.state.name == "COMPLETE" and not rec.get("final"):
            raise ConfigError(
                f"trial #{t.number} finished before its metrics were recorded in "
                f"{live_path(paths)}, so new seeds or categories cannot be added to it; "
                "extend num_samples only, or start a new study (--name)"
            )
    write_json(live_path(paths), live)
    history = read_json(paths.dir / "extensions.json", []) or []
    history.append({"time": time.time(), "changes": lines})
    write_json(paths.dir / "extensions.json", history)


def missing_units(rec: dict[str, Any], spec: StudySpec) -> list[Unit]:
    have = set(as_units(rec.get("units") or spec.units))
    return [u for u in spec.units if u not in have]


def pending_topups(paths: StudyPaths, spec: StudySpec, study) -> dict[int, list[Unit]]:
    """COMPLETE trials that lack some of the spec's units -> those units."""
    from optuna.trial import TrialState

    live = read_live(paths)["trials"]
    out = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        rec = live.get(str(t.number))
        if rec is not None and rec.get("units"):
            missing = missing_units(rec, spec)
            if missing:
                out[t.number] = missing
    return out


def merged_artifacts(folder: str | None, rows: list[dict[str, Any]], final: dict[str, float]):
    """A copy of a top-up's artifact folder whose metrics.json holds every unit (old and new)
    and the merged metrics; the caller removes it. None without a folder."""
    if folder is None or not Path(folder).is_dir():
        return None
    tmp = Path(tempfile.mkdtemp(prefix="dhkd-extend-"))
    shutil.copytree(folder, tmp, dirs_exist_ok=True)
    metrics_file = RunFolder(tmp).metrics
    data = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    metrics_file.write_text(json.dumps({**data, **final, "units": rows}, indent=1))
    return str(tmp)
