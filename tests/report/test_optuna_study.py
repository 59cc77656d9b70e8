"""The Optuna study behind the search figures: rebuilt from MLflow, or read from optuna.db."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from dhkd.report.collect import load_study
from dhkd.report.figures_optuna import importances
from dhkd.report.optuna_study import optuna_study


def test_rebuilt_study_keeps_states_params_values_and_history(fake_study):
    uri, name, _ = fake_study
    data = load_study(name, uri)
    study, source, _ = optuna_study(data)
    assert source == "mlflow" and study.direction.name == "MAXIMIZE"
    by_number = {t.user_attrs["number"]: t for t in study.trials}
    assert [by_number[n].state for n in range(6)] == [
        TrialState.COMPLETE,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]
    t1 = by_number[1]
    assert t1.params == {"noise.sigma": 0.2, "loss.affinity_weight": pytest.approx(0.05)}
    assert t1.value == pytest.approx(data.trials[1].metric("objective/pixel_aupro"))
    assert sorted(t1.intermediate_values) == [1, 2]
    assert sorted(by_number[3].intermediate_values) == [1]
    assert study.best_trial.user_attrs["number"] == 1
    assert set(importances(study)) == {"noise.sigma", "loss.affinity_weight"}


def test_optuna_db_is_read_from_a_copy_when_given(fake_study, tmp_path):
    uri, name, _ = fake_study
    data = load_study(name, uri)
    db = tmp_path / name / "study" / "optuna.db"
    db.parent.mkdir(parents=True)
    own = optuna.create_study(study_name=name, storage=f"sqlite:///{db}", direction="maximize")
    own.add_trial(
        optuna.trial.create_trial(
            params={"noise.sigma": 0.0},
            value=0.5,
            distributions={"noise.sigma": optuna.distributions.CategoricalDistribution([0.0, 0.2])},
        )
    )
    before = db.read_bytes()
    study, source, notes = optuna_study(data, tmp_path)
    assert source == "optuna.db" and len(study.trials) == 1
    assert any("optuna.db has 1 finished trials, MLflow 6" in n for n in notes)
    assert db.read_bytes() == before  # never written to
    study, source, notes = optuna_study(data, tmp_path / "elsewhere")
    assert source == "mlflow" and "rebuilt from MLflow" in notes[0]
