"""Whole studies with fake trainings on a local Ray: pruned trials end PRUNED, failing trials are
retried then FAILED with their error in MLflow, and the study goes on (pitfalls 2, 4, 5, 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from study_helpers import fake_data, fake_spec_tree, make_fake_fit, mlflow_runs, optuna_trials

from dhkd.study.design.spec import parse_spec
from dhkd.study.driver.runner import RunOptions, run_study

pytestmark = pytest.mark.slow


def _run(tmp_path, tracking_uri, fit, **changes):
    spec = parse_spec(fake_spec_tree(tmp_path / "data", **changes))
    fake_data(tmp_path / "data", spec.data.category_names)
    opts = RunOptions(storage_path=tmp_path / "ray", tracking_uri=tracking_uri, fit_fn=fit,
                      quiet=True)  # fmt: skip
    return spec, run_study(spec, opts)


def test_pruned_and_failed_trials_reach_optuna_and_mlflow(tmp_path, tracking_uri, ray_local):
    marks = tmp_path / "marks"
    _, summary = _run(tmp_path, tracking_uri, make_fake_fit(marks, fail_sigma=0.99))
    assert summary.complete and summary.tracking_pending == 0
    trials = {t.params["noise.sigma"]: t for t in optuna_trials(tmp_path / "ray", "fake")}
    assert len(trials) == 3
    assert len(list(marks.glob("attempt-*"))) == 2  # tried, retried once, then FAILED
    failed = trials.pop(0.99)
    assert failed.state.name == "FAIL"
    first, second = sorted(trials.values(), key=lambda t: t.datetime_start)
    assert first.state.name == "COMPLETE" and first.value == pytest.approx(1.0)
    assert second.state.name == "PRUNED"  # ASHA stopped it at epoch 1: not COMPLETE
    assert max(second.intermediate_values) == 1

    study, runs = mlflow_runs(tracking_uri, "fake")
    assert study.info.status == "FINISHED"
    assert len(runs) == 3 and all(r.info.status != "RUNNING" for r in runs)
    client = __import__("mlflow").tracking.MlflowClient(tracking_uri)
    by_number = {int(r.data.tags["optuna_trial_number"]): r for r in runs}
    expected = {
        "COMPLETE": "FINISHED",
        "PRUNED": "FINISHED",
        "FAIL": "FAILED",
    }  # pruned: no failure
    for t in (first, second, failed):
        run = by_number[t.number]
        assert run.data.tags["mlflow.parentRunId"] == study.info.run_id
        assert run.info.status == expected[t.state.name]
        assert run.data.tags["state"] == {"FAIL": "FAILED"}.get(t.state.name, t.state.name)
        assert run.data.tags["trial_id"] == t.user_attrs["ray_trial_id"]
        assert run.data.params["noise.sigma"] == str(t.params["noise.sigma"])
        assert run.data.params["optim.epochs"] == "4"  # the resolved TrainConfig
        assert not [k for k in run.data.params if k.startswith("study.")]  # bookkeeping: tags
        assert run.data.tags["dhkd.searched"] == "noise.sigma"
        assert "config.yaml" in {f.path for f in client.list_artifacts(run.info.run_id)}
    notes = {n: r.data.tags["mlflow.note.content"] for n, r in by_number.items()}
    assert notes[first.number].startswith("COMPLETE at epoch 4: objective/pixel_aupro = 1.0000")
    assert notes[second.number].startswith("PRUNED by ASHA at epoch 1 (stopped early")
    failed_note = notes[failed.number]
    assert failed_note.startswith("FAILED at epoch 1: dhkd.errors.TrainingError: non-finite")
    study_note = study.data.tags["mlflow.note.content"]
    assert study_note.startswith("fake trainings for platform tests\n")
    exp_id, best_run = study.info.experiment_id, by_number[first.number].info.run_id
    link = f"[trial #{first.number}](#/experiments/{exp_id}/runs/{best_run}?workflowType="
    assert f"**Best trial**: {link}" in study_note and "1 PRUNED" in study_note
    assert by_number[second.number].data.tags["stop_reason"] == "asha at epoch 1"
    err = by_number[failed.number]
    assert "TrainingError" in err.data.tags["error"] and "non-finite loss" in err.data.tags["error"]
    assert err.data.tags["failures"] == "2"
    text = client.download_artifacts(err.info.run_id, "error.txt", str(tmp_path / "dl"))
    assert "non-finite loss" in Path(text).read_text()
    history = client.get_metric_history(by_number[first.number].info.run_id, "val/a/pixel_aupro")
    assert [m.step for m in history] == [1, 2, 3, 4]


def test_a_retried_trial_continues_from_its_checkpoint(tmp_path, tracking_uri, ray_local):
    changes = {"scientific": {"noise.sigma": {"type": "categorical", "values": [0.3]}},
               "scheduler": {"type": "none"}}  # fmt: skip
    _, summary = _run(tmp_path, tracking_uri, make_fake_fit(tmp_path / "m", flaky_sigma=0.3),
                      **changes)  # fmt: skip
    assert summary.complete and [r["state"] for r in summary.trials] == ["COMPLETE"]
    _, runs = mlflow_runs(tracking_uri, "fake")
    client = __import__("mlflow").tracking.MlflowClient(tracking_uri)
    path = client.download_artifacts(runs[0].info.run_id, "metrics.json", str(tmp_path / "dl"))
    assert json.loads(Path(path).read_text())["resumed_from"] == 2  # not retrained from scratch
    history = client.get_metric_history(runs[0].info.run_id, "objective/pixel_aupro")
    assert sorted({m.step for m in history}) == [1, 2, 3, 4]


def test_time_budget_prunes_what_runs_and_ends_the_study(tmp_path, tracking_uri, ray_local):
    fit = make_fake_fit(tmp_path / "m", epoch_s=1.5)
    changes = {"budget": {"time_s": 2.0, "max_concurrent": 1}, "scheduler": {"type": "none"}}
    _, summary = _run(tmp_path, tracking_uri, fit, **changes)
    assert summary.complete  # the budget ran out: nothing is left to resume
    assert [r["state"] for r in summary.trials] == ["PRUNED"]
    study, runs = mlflow_runs(tracking_uri, "fake")
    assert study.info.status == "FINISHED"
    assert [(r.info.status, r.data.tags["stop_reason"]) for r in runs] == [("FINISHED", "budget")]
    assert runs[0].data.tags["mlflow.note.content"].startswith("PRUNED by the time budget")
