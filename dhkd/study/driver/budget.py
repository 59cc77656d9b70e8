"""The study's budget: wall time counted over every run of the study (a resumed study goes on
with what is left) as a Tune Stopper, and the record that a budget (time_s, or gpu_hours, which
the searcher enforces: dhkd.study.state.live) ran out."""

from __future__ import annotations

import time

from ray.tune import Stopper

from dhkd.study.state.layout import StudyPaths, read_json, write_json


def _budget_file(paths: StudyPaths):
    return paths.dir / "budget.json"


def budget_state(paths: StudyPaths) -> dict:
    return read_json(_budget_file(paths), {}) or {"used_s": 0.0, "exhausted": False}


def add_used_time(paths: StudyPaths, seconds: float) -> None:
    state = budget_state(paths)
    state["used_s"] = float(state.get("used_s", 0.0)) + seconds
    write_json(_budget_file(paths), state)


class BudgetStopper(Stopper):
    def __init__(self, paths: StudyPaths, time_s: float | None) -> None:
        self.paths = paths
        self.time_s = time_s
        self._start: float | None = None
        self._used = 0.0

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_start": None}

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        if self.time_s is None:
            return False
        if self._start is None:
            self._start = time.monotonic()
            self._used = float(budget_state(self.paths).get("used_s", 0.0))
        if self._used + time.monotonic() - self._start < self.time_s:
            return False
        mark_exhausted(self.paths, "time_s")
        return True


def mark_exhausted(paths: StudyPaths, reason: str) -> None:
    """Record that the budget ran out (`reason`: the spec key that did): nothing to resume."""
    state = budget_state(paths)
    if not state.get("exhausted"):
        write_json(_budget_file(paths), {**state, "exhausted": True, "reason": reason})
