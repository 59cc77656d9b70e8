"""Asynchronous successive halving (ASHA) whose rung state survives a restarted driver.

Ray's AsyncHyperBandScheduler keeps its rungs in memory and Tuner.restore rebuilds it empty
(docs/studies.md, pitfall 3): a resumed study would then compare new trials against nothing. This
scheduler writes its rungs to `scheduler.json` after every change and reads them back when
the driver restarts.

One bracket. Rung milestones are grace_period * reduction_factor**k student epochs below the
trial's last epoch. A trial's first evaluation at or past a milestone is recorded in that rung;
if it falls below the (1 - 1/reduction_factor) quantile of the values recorded there before
it, the trial is stopped (the searcher and tracking then record it PRUNED). The final report
of a trial (`finished`) is never stopped, unless the trial was stopped before: a trial that
a restored driver resumes from a checkpoint taken before its stop is stopped again at its
first result (the saved "stopped" list wins over the snapshot).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from dhkd.study.state.layout import StudyPaths, read_json, write_json
from dhkd.study.state.outcome import EPOCH, FINISHED, OBJECTIVE, UNITS


def milestones(grace_period: int, reduction_factor: float, max_epochs: int) -> list[int]:
    out: list[int] = []
    t = float(grace_period)
    while t < max_epochs:
        if not out or int(t) > out[-1]:
            out.append(int(t))
        t *= reduction_factor
    return out


class PersistentASHA(FIFOScheduler):
    def __init__(
        self,
        paths: StudyPaths,
        mode: str,
        grace_period: int,
        reduction_factor: float,
        max_epochs: int,
    ) -> None:
        super().__init__()
        self.paths = paths
        self._sign = 1.0 if mode == "max" else -1.0
        self.reduction_factor = reduction_factor
        self.rungs = milestones(grace_period, reduction_factor, max_epochs)
        self._recorded: dict[str, dict[str, float]] | None = None
        self._stopped: dict[str, int] | None = None

    # -- state ----------------------------------------------------------------------------
    def _load(self) -> None:
        if self._recorded is not None:
            return
        state = read_json(self.paths.scheduler_state, {}) or {}
        self._recorded = {str(m): dict(state.get("rungs", {}).get(str(m), {})) for m in self.rungs}
        self._stopped = dict(state.get("stopped", {}))

    def _save(self) -> None:
        write_json(
            self.paths.scheduler_state,
            {"milestones": self.rungs, "rungs": self._recorded, "stopped": self._stopped},
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_recorded"] = state["_stopped"] = None  # re-read from scheduler.json
        return state

    def stopped(self) -> dict[str, int]:
        """Ray trial id -> epoch at which ASHA stopped it."""
        self._load()
        return dict(self._stopped or {})

    # -- decisions ------------------------------------------------------------------------
    def decide(self, trial_id: str, epoch: int, value: float) -> str:
        """Record `value` (higher is better after the sign) at `epoch`; CONTINUE or STOP."""
        self._load()
        assert self._recorded is not None and self._stopped is not None
        if trial_id in self._stopped:  # stopped before a restore resumed it from a checkpoint
            return TrialScheduler.STOP
        for milestone in reversed(self.rungs):
            rung = self._recorded[str(milestone)]
            if epoch < milestone:
                continue
            if trial_id in rung:
                return TrialScheduler.CONTINUE
            others = [v for k, v in rung.items() if k != trial_id]
            rung[trial_id] = self._sign * value
            stop = bool(others) and self._sign * value < float(
                np.nanpercentile(others, (1 - 1 / self.reduction_factor) * 100)
            )
            if stop:
                self._stopped[trial_id] = epoch
            self._save()
            return TrialScheduler.STOP if stop else TrialScheduler.CONTINUE
        return TrialScheduler.CONTINUE

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if trial.trial_id in self.stopped():
            return TrialScheduler.STOP
        if trial.config.get(UNITS):  # a top-up of a COMPLETE trial (extend.py) runs to the end
            return TrialScheduler.CONTINUE
        if result.get(FINISHED) == 1 or OBJECTIVE not in result or EPOCH not in result:
            return TrialScheduler.CONTINUE
        return self.decide(trial.trial_id, int(result[EPOCH]), float(result[OBJECTIVE]))

    def debug_string(self) -> str:
        self._load()
        sizes = {m: len(r) for m, r in (self._recorded or {}).items()}
        return f"PersistentASHA: rungs (epoch: trials) {sizes}, stopped {len(self._stopped or {})}"
