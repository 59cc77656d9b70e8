"""`dhkd suite run`: every study of a suite, in order, through the study runner, after its plan.

- A study whose storage folder holds the same spec and a complete summary is skipped; any other
  is run by dhkd.study.driver.runner.run_study, which resumes an interrupted one from its
  storage (finished trials kept, interrupted ones continued from their checkpoints), so a
  killed suite driver loses no finished trial and repeats none when run again.
- The reference is measured once per reference key (dhkd.study.driver.reference.reference_key:
  its config, the data and the units) across the suite: the first study with that key measures
  it, a later one gets a copy naming the measuring study and its MLflow reference run
  (share_reference), logged under its own study run with those as tags and no cost metrics.
- The plan's estimate and the actual wall time go to <storage>/suites/<name>.json, with one
  entry per invocation (a resumed suite adds one) and every study's outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from dhkd.study.design.spec import StudySpec, parse_spec, spec_tree
from dhkd.study.driver.reference import (
    covers,
    reference_dir,
    reference_key,
    reference_source,
    share_reference,
)
from dhkd.study.driver.runner import RunOptions, run_study
from dhkd.study.state.layout import StudyPaths, digest, read_json, write_json
from dhkd.suite.plan import Done, Plan

SUITES_DIR = "suites"  # <storage>/suites/<suite name>.json


@dataclass
class StudyOutcome:
    name: str
    skipped: bool  # complete before this run
    complete: bool
    counts: dict[str, int]
    wall_s: float  # of this run (0 when skipped)
    estimate_wall_s: float | None  # the plan's, over the suite's trial slots
    reference: dict[str, str] | None  # {study, run_id} when another study measured it

    @property
    def failed(self) -> int:
        return self.counts.get("FAILED", 0)


def summary_path(storage: str | Path, name: str) -> Path:
    return Path(storage).expanduser().resolve() / SUITES_DIR / f"{name}.json"


def completed(spec: StudySpec, paths: StudyPaths, retry_failed: bool) -> dict[str, Any] | None:
    """The study's summary when its folder holds this very spec and every trial is final
    (with retry_failed: and none FAILED); None when it must run."""
    if not paths.spec.is_file():
        return None
    if digest(yaml.safe_load(paths.spec.read_text())) != digest(spec_tree(spec)):
        return None
    summary = read_json(paths.dir / "summary.json")
    if not summary or not summary.get("complete"):
        return None
    if retry_failed and summary.get("counts", {}).get("FAILED"):
        return None
    return summary


def _logged_reference_run(paths: StudyPaths) -> str | None:
    """The MLflow run id of the study's reference run once it is logged (tracking.json)."""
    state = read_json(paths.tracking_state, {}) or {}
    return state.get("reference_run_id") if state.get("reference_logged") else None


def _has_reference(paths: StudyPaths) -> bool:
    return (reference_dir(paths) / "metrics.json").is_file()


def run_suite(
    plan: Plan,
    specs: list[StudySpec],
    opts: RunOptions,
    run: Callable[[StudySpec, RunOptions], Any] = run_study,
    say: Callable[[str], None] = print,
) -> list[StudyOutcome]:
    """Run the studies `specs` of plan.suite in order; returns each one's outcome and writes the
    suite summary (also when a study raises, the suite then counting as not finished)."""
    slots = plan.suite.resources.slots
    measured: dict[str, StudyPaths] = {}  # reference key -> the study that measured it
    outcomes: list[StudyOutcome] = []
    started, start = datetime.now(UTC), time.monotonic()
    try:
        for spec, estimate in zip(specs, plan.studies, strict=True):
            paths = StudyPaths(Path(opts.storage_path), spec.name)
            est = None if estimate.compute.wall_s is None else estimate.compute.wall_s / slots
            key = reference_key(spec)
            done = completed(spec, paths, opts.retry_failed)
            if done is not None:
                say(f"[dhkd] study {spec.name}: complete, skipped")
                outcome = StudyOutcome(spec.name, True, True, done.get("counts", {}), 0.0, est,
                                       reference_source(paths))  # fmt: skip
            else:
                if key in measured and not covers(paths, spec):
                    _share(measured[key], paths, say)
                say(f"[dhkd] study {spec.name}: running")
                summary = run(spec, opts)
                outcome = StudyOutcome(spec.name, False, summary.complete, summary.counts(),
                                       summary.wall_s, est, reference_source(paths))  # fmt: skip
            outcomes.append(outcome)
            own = _has_reference(paths) and reference_source(paths) is None
            if key is not None and key not in measured and own:
                measured[key] = paths
    finally:
        write_suite_summary(plan, specs, opts, outcomes, started, time.monotonic() - start)
    return outcomes


def _share(source: StudyPaths, paths: StudyPaths, say: Callable[[str], None]) -> None:
    run_id = _logged_reference_run(source)
    if run_id is None:
        say(f"[dhkd] study {paths.name} measures its own reference: the one {source.name} "
            "measured is not logged to MLflow yet (send it with "
            f"`dhkd study sync {source.name}`)")  # fmt: skip
        return
    share_reference(source, paths, run_id)
    say(f"[dhkd] study {paths.name}: the reference measured by {source.name} "
        f"(MLflow run {run_id}) is reused")  # fmt: skip


def write_suite_summary(
    plan: Plan,
    specs: list[StudySpec],
    opts: RunOptions,
    outcomes: list[StudyOutcome],
    started: datetime,
    wall_s: float,
) -> Path:
    """<storage>/suites/<name>.json: the first invocation's plan estimate (each invocation's in
    `runs`), the actual wall time summed over every invocation (this one appended to `runs`),
    and each study's latest outcome."""
    suite = plan.suite
    path = summary_path(opts.storage_path, suite.name)
    old = read_json(path, {}) or {}
    ran = {o.name for o in outcomes}
    all_done = len(outcomes) == len(specs) and all(o.complete for o in outcomes)
    runs = [*old.get("runs", []), {
        "started": started.isoformat(timespec="seconds"),
        "ended": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_s": round(wall_s, 1),
        "estimate_wall_s": plan.wall_s,
        "studies_run": [o.name for o in outcomes if not o.skipped],
        "studies_skipped": [o.name for o in outcomes if o.skipped],
        "finished": all_done,
    }]  # fmt: skip
    studies = [s for s in old.get("studies", []) if s["name"] not in ran]
    studies += [{"name": o.name, "skipped": o.skipped, "complete": o.complete, "counts": o.counts,
                 "wall_s": round(o.wall_s, 1), "estimate_wall_s": o.estimate_wall_s,
                 "reference_from": o.reference} for o in outcomes]  # fmt: skip
    order = {s.name: i for i, s in enumerate(specs)}
    studies.sort(key=lambda s: order.get(s["name"], len(order)))
    write_json(path, {
        "suite": suite.name,
        "source": suite.source,
        "studies": studies,
        # the first invocation's plan: a resumed suite plans again from what has run since
        "estimate": old.get("estimate") or {"wall_s": plan.wall_s, "cpu_s": plan.total.cpu_s,
                                            "gpu_s": plan.total.gpu_s},
        "actual": {"wall_s": round(sum(r["wall_s"] for r in runs), 1)},
        "started": runs[0]["started"],
        "ended": runs[-1]["ended"],
        "finished": all_done,
        "runs": runs,
    })  # fmt: skip
    return path


def format_outcome(plan: Plan, outcomes: list[StudyOutcome], path: Path) -> str:
    """The suite's studies, then this run's plan estimate (of what was left when it started)
    beside its actual wall time, and the suite's total."""
    summary = read_json(path, {}) or {}
    lines = [f"suite {plan.suite.name}:"]
    for o in outcomes:
        counts = ", ".join(f"{n} {s}" for s, n in o.counts.items()) or "no trials"
        state = "complete" if o.complete else "not finished (run the command again to resume)"
        doing = "skipped" if o.skipped else f"ran {o.wall_s / 3600:.2f} h"
        ref = f"; reference from {o.reference['study']}" if o.reference else ""
        lines.append(f"  {o.name}: {doing}, {state} ({counts}){ref}")
    estimate = "unknown" if plan.wall_s is None else f"{plan.wall_s / 3600:.2f} h"
    actual = summary.get("actual", {}).get("wall_s", 0.0)
    this = summary.get("runs", [{}])[-1].get("wall_s", 0.0)
    lines.append(f"wall time of this run: estimated {estimate}, actual {this / 3600:.2f} h "
                 f"(all runs of the suite {actual / 3600:.2f} h); summary: {path}")  # fmt: skip
    return "\n".join(lines)


def done_work(specs: list[StudySpec], storage: str | Path) -> dict[str, Done]:
    """The studies of the suite already in `storage` (a resumed or extended suite)."""
    out = {}
    for spec in specs:
        paths = StudyPaths(Path(storage), spec.name)
        if not paths.spec.is_file():
            continue
        old = parse_spec(yaml.safe_load(paths.spec.read_text()), str(paths.spec), spec.base_dir)
        measured = _has_reference(paths)
        out[spec.name] = Done(old.trials, set(old.units),
                              completed(spec, paths, False) is not None, measured)  # fmt: skip
    return out
