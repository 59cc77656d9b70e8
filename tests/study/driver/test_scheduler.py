"""ASHA: rung decisions, and rung state that survives a restarted driver (pitfall 3)."""

from __future__ import annotations

import pickle

from ray.tune.schedulers import TrialScheduler

from dhkd.study.driver.scheduler import PersistentASHA, milestones
from dhkd.study.state.layout import StudyPaths

STOP, GO = TrialScheduler.STOP, TrialScheduler.CONTINUE


def test_milestones():
    assert milestones(1, 2, 8) == [1, 2, 4]
    assert milestones(5, 2, 20) == [5, 10]
    assert milestones(2, 3, 20) == [2, 6, 18]


def _asha(tmp_path, mode="max"):
    return PersistentASHA(StudyPaths(tmp_path, "s"), mode, 1, 2, 8)


def test_trials_below_the_rung_quantile_stop(tmp_path):
    asha = _asha(tmp_path)
    assert asha.decide("a", 1, 0.9) == GO  # first at the rung: nothing to compare with
    assert asha.decide("b", 1, 0.5) == STOP
    assert asha.decide("c", 1, 0.95) == GO
    assert asha.decide("a", 2, 0.9) == GO
    assert asha.decide("a", 2, 0.1) == GO  # recorded once per rung
    assert asha.stopped() == {"b": 1}


def test_min_mode_flips_the_comparison(tmp_path):
    asha = _asha(tmp_path, "min")
    assert asha.decide("a", 1, 0.2) == GO
    assert asha.decide("b", 1, 0.5) == STOP


def test_rung_state_survives_a_new_driver(tmp_path):
    asha = _asha(tmp_path)
    asha.decide("a", 1, 0.9)
    asha.decide("a", 2, 0.9)
    restored = pickle.loads(pickle.dumps(_asha(tmp_path)))  # what Tuner.restore rebuilds
    assert restored.decide("b", 1, 0.3) == STOP  # compared against "a" from the first driver
    assert restored.decide("c", 2, 0.95) == GO
    assert sorted(restored.stopped()) == ["b"]
    fresh = PersistentASHA(StudyPaths(tmp_path / "other", "s"), "max", 1, 2, 8)
    assert fresh.decide("b", 1, 0.3) == GO  # without the saved rungs it would not stop


def test_final_report_is_never_stopped(tmp_path):
    asha = _asha(tmp_path)
    asha.decide("a", 4, 0.9)

    class T:
        trial_id = "b"

        def __init__(self):
            self.config = {}

    assert asha.on_trial_result(None, T(), {"epoch": 4, "objective": 0.1, "finished": 1}) == GO
    assert asha.on_trial_result(None, T(), {"epoch": 4, "objective": 0.1}) == STOP


def test_a_stopped_trial_resumed_from_an_older_snapshot_stays_stopped(tmp_path):
    asha = _asha(tmp_path)
    asha.decide("a", 2, 0.9)
    assert asha.decide("b", 2, 0.1) == STOP
    restored = pickle.loads(pickle.dumps(_asha(tmp_path)))  # a new driver, after Tuner.restore

    class T:
        trial_id = "b"

        def __init__(self):
            self.config = {}

    # the checkpoint Tune restored is from epoch 1: "b" reports epoch 1, then 2, and so on
    assert restored.on_trial_result(None, T(), {"epoch": 1, "objective": 0.99}) == STOP
    assert (
        restored.on_trial_result(None, T(), {"epoch": 4, "objective": 0.99, "finished": 1}) == STOP
    )
