"""The Optuna searcher: real final states (pitfalls 1 and 4) and trials lost by a killed driver."""

from __future__ import annotations

import pickle

from optuna.trial import TrialState

from dhkd.study.design.spec import parse_spec
from dhkd.study.driver.searcher import OptunaSearcher, open_optuna_study
from dhkd.study.state.layout import StudyPaths


def _spec(**changes):
    tree = {
        "name": "s",
        "description": "d",
        "data": {"root": "/x", "categories": ["bottle"]},
        "fixed": {"optim.epochs": 4},
        "scientific": {"noise.sigma": {"type": "float", "low": 0.0, "high": 1.0}},
        "sampler": {"type": "random", "seed": 0},
        "num_samples": 4,
        "budget": {"max_concurrent": 4},
        **changes,
    }
    return parse_spec(tree)


def _searcher(tmp_path):
    paths = StudyPaths(tmp_path, "s")
    spec = _spec()
    open_optuna_study(paths, spec)
    return paths, spec, OptunaSearcher(paths, spec)


def test_final_states_follow_the_trials_reports(tmp_path):
    paths, spec, searcher = _searcher(tmp_path)
    configs = [searcher.suggest(t) for t in ("t0", "t1", "t2")]
    assert [c["trial_number"] for c in configs] == [0, 1, 2]
    for tid in ("t0", "t1", "t2"):
        searcher.on_trial_result(tid, {"epoch": 1, "objective": 0.5})
    searcher.on_trial_complete("t0", {"epoch": 4, "objective": 0.8, "finished": 1})
    # Tune marks a trial that ASHA stopped `done` and skips on_trial_result for that result:
    searcher.on_trial_complete("t1", {"epoch": 2, "objective": 0.3, "done": True})
    searcher.on_trial_complete("t2", None, error=True)
    searcher.on_trial_complete("t0", {"epoch": 4, "objective": 0.1, "finished": 1})  # twice
    trials = open_optuna_study(paths, spec).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
    assert trials[0].value == 0.8  # the first final state is kept
    assert trials[1].intermediate_values == {1: 0.5, 2: 0.3}
    assert trials[0].user_attrs["ray_trial_id"] == "t0"


def test_restored_searcher_completes_resumed_trials_and_reuses_lost_ones(tmp_path):
    paths, spec, searcher = _searcher(tmp_path)
    searcher.suggest("t0")
    searcher.suggest("t1")
    searcher.save(str(tmp_path / "snapshot.json"))  # Tune's snapshot knows t0, t1
    lost = searcher.suggest("t2")  # asked after the snapshot, then the driver was killed

    restored = pickle.loads(pickle.dumps(OptunaSearcher(paths, spec)))
    restored.restore(str(tmp_path / "snapshot.json"))
    again = restored.suggest("t9")  # the lost Optuna trial is handed out again
    assert again == lost
    assert restored.suggest("t10")["trial_number"] == 3
    restored.on_trial_complete("t1", {"epoch": 4, "objective": 0.7, "finished": 1})
    restored.on_trial_complete("t9", {"epoch": 1, "objective": 0.1})
    trials = open_optuna_study(paths, spec).get_trials()
    assert len(trials) == 4
    assert trials[1].state == TrialState.COMPLETE and trials[1].value == 0.7
    assert trials[2].state == TrialState.PRUNED
    assert trials[2].user_attrs["ray_trial_id"] == "t9"


def test_a_trial_asked_but_never_given_params_gets_them_when_reused(tmp_path):
    paths, spec, searcher = _searcher(tmp_path)
    searcher.save(str(tmp_path / "snapshot.json"))
    open_optuna_study(paths, spec).ask()  # the driver died right after ask(), before suggesting

    restored = OptunaSearcher(paths, spec)
    restored.restore(str(tmp_path / "snapshot.json"))
    config = restored.suggest("t0")
    assert config["trial_number"] == 0
    assert 0.0 <= config["params"]["noise.sigma"] <= 1.0
    trial = open_optuna_study(paths, spec).get_trials()[0]
    assert trial.params == config["params"]


def test_concurrency_limit(tmp_path):
    paths, _, _ = _searcher(tmp_path)
    searcher = OptunaSearcher(paths, _spec(budget={"max_concurrent": 1}))
    assert searcher.suggest("a") is not None
    assert searcher.suggest("b") is None
    searcher.on_trial_complete("a", {"epoch": 4, "objective": 0.5, "finished": 1})
    assert searcher.suggest("b") is not None


def test_a_restarted_driver_does_not_replay_the_same_draws(tmp_path):
    paths, spec, first_driver = _searcher(tmp_path)
    first = first_driver.suggest("a")
    first_driver.on_trial_complete("a", {"epoch": 4, "objective": 0.5, "finished": 1})
    second = OptunaSearcher(paths, spec).suggest("b")  # a new driver, same seed in the spec
    assert second["params"] != first["params"]


def test_a_restarted_driver_keeps_the_grid_order(tmp_path):
    grid_spec = _spec(
        scientific={"noise.sigma": {"type": "categorical", "values": [0.0, 0.2, 0.4, 0.6]}},
        sampler={"type": "grid", "seed": 0},
    )
    paths = StudyPaths(tmp_path, "s")
    values = []
    for _ in range(4):  # a new driver (a new GridSampler) for every trial
        searcher = OptunaSearcher(paths, grid_spec)
        config = searcher.suggest(f"t{len(values)}")
        searcher.on_trial_complete(f"t{len(values)}", {"epoch": 4, "objective": 0.5, "finished": 1})
        values.append(config["params"]["noise.sigma"])
    assert sorted(values) == [0.0, 0.2, 0.4, 0.6]
    trials = open_optuna_study(paths, grid_spec).get_trials()
    assert sorted(t.params["noise.sigma"] for t in trials) == [0.0, 0.2, 0.4, 0.6]
