"""Reading a study back from MLflow, and the clear errors for bad input."""

from __future__ import annotations

import pytest

from dhkd.errors import DhkdError
from dhkd.report.collect import load_study, load_units
from dhkd.report.select import columns, matches, parse_value

from .report_helpers import FakeTrial, write_study


def test_study_runs_params_and_spec_come_back(fake_study):
    uri, name, trials = fake_study
    data = load_study(name, uri)
    assert [t.number for t in data.trials] == [0, 1, 2, 3, 4, 5]
    assert [t.state for t in data.trials] == [trials[n].state for n in range(6)]
    assert data.categories == ["a", "b", "c", "d"]
    assert data.spec["scientific"]["noise.sigma"]["values"] == [0.0, 0.2, 0.5]
    assert data.objective == ("pixel_aupro", "max")
    assert data.trials[1].searched == ["loss.affinity_weight", "noise.sigma"]
    # the final (step 2) value, not the first epoch's
    assert data.trials[1].metric("test/b/image_auroc") == pytest.approx(0.87 + 0.002)


def test_units_come_from_the_metrics_json_artifact(fake_study):
    uri, name, trials = fake_study
    data = load_study(name, uri)
    units = load_units(data, data.trials[1])
    assert units == trials[1].units
    assert load_units(data, data.trials[4]) is None  # FAILED: no artifact, no crash


def test_columns_take_the_best_complete_trial_per_value(fake_study):
    uri, name, _ = fake_study
    cols = columns(load_study(name, uri))
    assert [c.key for c in cols] == ["noise.sigma=0.0", "noise.sigma=0.2", "noise.sigma=0.5"]
    assert [c.trial.number if c.trial else None for c in cols] == [0, 1, None]
    assert [(c.n_complete, c.n_trials) for c in cols] == [(2, 3), (2, 2), (0, 1)]


def test_unknown_study_lists_the_known_ones(fake_study):
    uri, name, _ = fake_study
    with pytest.raises(DhkdError, match=rf"no study named 'nope'.*studies there: {name}"):
        load_study("nope", uri)


def test_missing_database_is_an_error_not_a_new_file(tmp_path):
    db = tmp_path / "typo.db"
    with pytest.raises(DhkdError, match="no MLflow database"):
        load_study("x", f"sqlite:///{db}")
    assert not db.exists()


def test_a_study_without_complete_trials_says_so(tmp_path, tracking_uri):
    trials = [FakeTrial(0, 0.0, 0.1, "PRUNED", 0.7), FakeTrial(1, 0.2, 0.1, "FAILED", 0.0)]
    name = write_study(tmp_path, tracking_uri, trials)
    with pytest.raises(DhkdError, match=r"no COMPLETE trial yet \(1 FAILED, 1 PRUNED\)"):
        load_study(name, tracking_uri)


@pytest.mark.parametrize(
    ("raw", "value", "expected"),
    [
        ("0.2", 0.2, True),
        ("0.0", 0, True),
        ("dual", "dual", True),
        ("true", True, True),
        ("[2, 3]", [2, 3], True),
        ("0.20000001", 0.2, False),
        ("spatial", "dual", False),
    ],
)
def test_param_strings_match_spec_values(raw, value, expected):
    assert matches(raw, value) is expected


def test_parse_value_uses_the_spec_distribution():
    assert parse_value("0.2", {"type": "categorical", "values": [0.0, 0.2]}) == 0.2
    assert parse_value("3", {"type": "int", "low": 1, "high": 4}) == 3
    with pytest.raises(ValueError, match="not among"):
        parse_value("0.3", {"type": "categorical", "values": [0.0, 0.2]})


def test_spec_falls_back_to_the_spec_yaml_artifact(tmp_path, tracking_uri):
    """A study run without spec.* params (e.g. written by an older platform) still reports."""
    import yaml
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.create_experiment(
        "old", tags={"dhkd.study": "old"}, artifact_location=(tmp_path / "art").as_uri()
    )
    study = client.create_run(exp, tags={"dhkd.role": "study"}).info.run_id
    spec = {
        "name": "old",
        "description": "older layout",
        "scientific": {"noise.sigma": {"type": "categorical", "values": [0.0, 0.1]}},
        "objective": {"metric": "image_auroc", "mode": "max"},
        "seeds": [0],
        "data": {"root": "x", "categories": ["bottle"]},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    client.log_artifact(study, str(tmp_path / "spec.yaml"))
    trial = client.create_run(
        exp,
        tags={
            "dhkd.role": "trial",
            "mlflow.parentRunId": study,
            "optuna_trial_number": "0",
            "state": "COMPLETE",
        },
    )
    client.log_param(trial.info.run_id, "noise.sigma", "0.1")
    client.log_metric(trial.info.run_id, "val/bottle/image_auroc", 0.9, step=1)
    data = load_study("old", tracking_uri)
    assert data.objective == ("image_auroc", "max") and data.categories == ["bottle"]
    cols = columns(data)
    assert [c.trial.number if c.trial else None for c in cols] == [None, 0]


def test_a_server_that_does_not_answer_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(DhkdError, match="does not answer"):
        load_study("x", "http://127.0.0.1:9")
