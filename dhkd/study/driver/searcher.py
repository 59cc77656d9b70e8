"""A Ray Tune Searcher over a persistent Optuna study (sqlite under the study folder).

Why not ray.tune.search.optuna.OptunaSearch: after Tuner.restore it keeps resumed trials as
FAIL and refuses their real completion (docs/studies.md, pitfall 1), and ASHA-stopped trials reach
it as COMPLETE with partial values (pitfall 4). Here we own ask/tell:

- every Optuna trial carries user attributes `ray_trial_id` and `params`;
- the live map Ray trial id -> Optuna number is saved with Tune's experiment snapshot (save/
  restore), so a restored run tells resumed trials their real final state;
- an Optuna trial asked after the last snapshot (so Ray forgot it) is handed out again to the
  next Ray trial instead of a new ask: the study ends with exactly num_samples trials;
- the final state comes from `trial_outcome` (COMPLETE / PRUNED / FAIL), never from Ray's
  `done` flag, which Ray also sets on trials that a scheduler stops.
Concurrency is limited here (not by ConcurrencyLimiter, whose live set is not restored).
"""

from __future__ import annotations

import logging
from typing import Any

from ray.tune.search import Searcher

from dhkd.errors import ConfigError
from dhkd.study.design.space import grid, suggest
from dhkd.study.design.spec import StudySpec
from dhkd.study.driver.budget import mark_exhausted
from dhkd.study.state.layout import StudyPaths, read_json, write_json
from dhkd.study.state.live import gpu_budget_left
from dhkd.study.state.outcome import (
    COMPLETE,
    EPOCH,
    FAILED,
    OBJECTIVE,
    PARAMS,
    PRUNED,
    TRIAL_NUMBER,
    UNITS,
    trial_outcome,
)

log = logging.getLogger(__name__)


def open_optuna_study(paths: StudyPaths, spec: StudySpec):
    """Create or load the study's Optuna study (random/TPE seeds move on with every trial)."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    paths.dir.mkdir(parents=True, exist_ok=True)
    direction = "maximize" if spec.objective.mode == "max" else "minimize"
    storage = optuna.storages.RDBStorage(paths.optuna_url)
    existing = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    seed = spec.sampler.seed
    moving_seed = None if seed is None else seed + existing.get(spec.name, 0)
    # random / TPE: a restarted driver must not replay the same draws, so the seed moves on.
    if spec.sampler.type == "grid":
        # The grid ids stored with each trial index a list that GridSampler shuffles with its
        # seed: every driver of a study must use the same seed (it picks unvisited points from
        # the storage, so a restart repeats nothing).
        sampler = optuna.samplers.GridSampler(grid(spec.space), seed=seed or 0)
    elif spec.sampler.type == "random":
        sampler = optuna.samplers.RandomSampler(seed=moving_seed)
    else:
        sampler = optuna.samplers.TPESampler(
            seed=moving_seed,
            n_startup_trials=spec.sampler.n_startup_trials,
            multivariate=True,
            group=True,
            constant_liar=True,
        )
    return optuna.create_study(
        storage=storage,
        study_name=spec.name,
        direction=direction,
        sampler=sampler,
        load_if_exists=True,
    )


def reopen_failed(paths: StudyPaths, spec: StudySpec) -> list[int]:
    """`study run --retry-failed`: every FAIL trial of the study goes back to RUNNING with its
    number and params (its intermediate values dropped), so the searcher hands it out again to
    a new Ray trial (an orphan, see the module docstring). Optuna has no public way to reopen a
    finished trial, so its sqlite rows are updated; returns the numbers reopened. A study with
    interrupted trials (RUNNING) is refused: they resume from their checkpoints first."""
    import sqlite3

    from optuna.trial import TrialState

    study = open_optuna_study(paths, spec)  # the schema exists
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if running:
        listed = ", ".join(f"#{t.number}" for t in running)
        raise ConfigError(
            f"study {spec.name} has interrupted trials ({listed}): resume them first with the "
            "same command without --retry-failed, then retry the FAILED ones"
        )
    db = sqlite3.connect(paths.dir / "optuna.db")
    try:
        with db:
            rows = db.execute(
                "SELECT t.trial_id, t.number FROM trials t JOIN studies s USING (study_id) "
                "WHERE s.study_name = ? AND t.state = 'FAIL' ORDER BY t.number",
                (spec.name,),
            ).fetchall()
            ids = [(trial_id,) for trial_id, _ in rows]
            db.executemany(
                "UPDATE trials SET state = 'RUNNING', datetime_complete = NULL WHERE trial_id = ?",
                ids,
            )
            db.executemany("DELETE FROM trial_intermediate_values WHERE trial_id = ?", ids)
    finally:
        db.close()
    return [number for _, number in rows]


def live_trial(study, number: int):
    """An optuna.Trial handle for a trial of `study` by number (to report or set attributes)."""
    import optuna

    frozen = study.get_trials(deepcopy=False)[number]
    return optuna.trial.Trial(study, frozen._trial_id)


def finish_trial(study, number: int, state: str, value: float | None) -> bool:
    """Tell Optuna a trial's final state once; returns False if it was already finished."""
    from optuna.trial import TrialState

    if study.get_trials(deepcopy=False)[number].state.is_finished():
        return False
    try:
        if state == COMPLETE and value is not None:
            study.tell(number, value)
        elif state == PRUNED:
            study.tell(number, state=TrialState.PRUNED)
        else:
            study.tell(number, state=TrialState.FAIL)
    except RuntimeError as exc:  # GridSampler calls study.stop() on the last grid point;
        if "Study.stop" not in str(exc):  # the state is stored before that raises
            raise
    return True


class OptunaSearcher(Searcher):
    def __init__(self, paths: StudyPaths, spec: StudySpec) -> None:
        # metric=None: Tune must not demand the objective in every (non-evaluation) result.
        super().__init__(metric=None, mode=None)
        self.paths = paths
        self.spec = spec
        self.max_concurrent = spec.budget.max_concurrent
        self._live: dict[str, int] = {}
        self._extending: dict[str, int] = {}  # Ray trial id -> number of a trial it tops up
        self._topups: dict[int, list] | None = None
        self._reusable: list[int] | None = None
        self._study = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_study"] = None
        return state

    @property
    def study(self):
        if self._study is None:
            self._study = open_optuna_study(self.paths, self.spec)
        return self._study

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent
        return True

    def _orphans(self) -> list[int]:
        """RUNNING Optuna trials that no Ray trial holds (asked after the last snapshot)."""
        if self._reusable is None:
            from optuna.trial import TrialState

            held = set(self._live.values())
            running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            self._reusable = sorted(t.number for t in running if t.number not in held)
        return self._reusable

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if len(self._live) >= self.max_concurrent:
            return None
        if not gpu_budget_left(self.paths, self.spec):
            mark_exhausted(self.paths, "gpu_hours")
            return Searcher.FINISHED
        topups = self._pending_topups()
        if topups:
            number, units = next(iter(topups.items()))
            del topups[number]
            self._extending[trial_id] = number
            params = self._frozen(number).user_attrs.get(PARAMS, {})
            return {TRIAL_NUMBER: number, PARAMS: params, UNITS: [list(u) for u in units]}
        orphans = self._orphans()
        if orphans:
            number = orphans.pop(0)
            params = self._frozen(number).user_attrs.get(PARAMS)
            trial = live_trial(self.study, number)
            if params is None:  # the driver died between ask() and recording the params:
                params = suggest(trial, self.spec.space)  # values already drawn are kept
                trial.set_user_attr(PARAMS, params)
        else:
            trial = self.study.ask()
            number = trial.number
            params = suggest(trial, self.spec.space)
            trial.set_user_attr(PARAMS, params)
        trial.set_user_attr("ray_trial_id", trial_id)
        self._live[trial_id] = number
        return {TRIAL_NUMBER: number, PARAMS: params}

    def _pending_topups(self) -> dict[int, list]:
        """COMPLETE trials that an extension gave new units and no Ray trial tops up yet."""
        if self._topups is None:
            from dhkd.study.driver.extend import pending_topups

            held = set(self._extending.values())
            pending = pending_topups(self.paths, self.spec, self.study)
            self._topups = {n: u for n, u in pending.items() if n not in held}
        return self._topups

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        number = self._live.get(trial_id)
        if number is not None:
            self._report(number, result)

    def _report(self, number: int, result: dict | None) -> None:
        """Record the objective at this epoch as an Optuna intermediate value (once)."""
        value = (result or {}).get(OBJECTIVE)
        if value is None or EPOCH not in result:
            return
        frozen = self._frozen(number)
        step = int(result[EPOCH])
        if not frozen.state.is_finished() and step not in frozen.intermediate_values:
            live_trial(self.study, number).report(float(value), step)

    def _frozen(self, number: int):
        return self.study.get_trials(deepcopy=False)[number]

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if self._extending.pop(trial_id, None) is not None:
            return  # a top-up: Optuna keeps the trial's first value (live.json the merged one)
        number = self._live.pop(trial_id, None)
        if number is None:
            number = self._number_of(trial_id)
        if number is None:
            log.warning("trial %s is unknown to the Optuna study; not recorded", trial_id)
            return
        state = trial_outcome(result, error)
        if state == PRUNED:  # Tune skips on_trial_result for the result that stopped it
            self._report(number, result)
        value = (result or {}).get(OBJECTIVE) if state == COMPLETE else None
        if not finish_trial(self.study, number, state, value):
            log.info("Optuna trial %d already finished; keeping its first final state", number)
        if state == FAILED:
            log.info("Optuna trial %d recorded FAIL", number)

    def _number_of(self, trial_id: str) -> int | None:
        for t in self.study.get_trials(deepcopy=False):
            if t.user_attrs.get("ray_trial_id") == trial_id:
                return t.number
        return None

    def save(self, checkpoint_path: str) -> None:
        state = {"live": self._live, "extending": self._extending}
        write_json(self.paths.dir / "searcher.json", state)  # readable copy
        write_json(_as_path(checkpoint_path), state)

    def restore(self, checkpoint_path: str) -> None:
        from optuna.trial import TrialState

        saved = read_json(_as_path(checkpoint_path), {}) or {}
        trials = self.study.get_trials(deepcopy=False)
        self._live = {
            tid: n
            for tid, n in saved.get("live", {}).items()
            if n < len(trials) and trials[n].state == TrialState.RUNNING
        }
        self._extending = dict(saved.get("extending", {}))
        self._reusable = None
        self._topups = None


def _as_path(path: str):
    from pathlib import Path

    return Path(path)
