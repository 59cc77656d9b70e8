"""MLflow tracking: nested runs found by tags, idempotent operations, and the outbox that keeps
results while the server is down and replays them later."""

from __future__ import annotations

import pytest
from study_helpers import mlflow_runs

from dhkd.cli import main
from dhkd.study.state.layout import StudyPaths, read_json, write_json
from dhkd.study.tracking.tracker import Tracker

DOWN = "http://127.0.0.1:9"  # nothing listens on the discard port


@pytest.fixture(autouse=True)
def _no_http_retries(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")


def _story(tracker: Tracker, artifacts) -> None:
    tracker.start_study("s", {"spec.method": "dhkd"}, {"dhkd.resumed": "False"})
    tracker.start_trial(0, "ray0", {"noise.sigma": 0.1})
    tracker.log_history(0, "train/teacher_nll", [3.0, 2.0, 1.5])
    tracker.log_history(0, "train/teacher_nll", [3.0, 2.0, 1.5])  # a retried trial: no new points
    tracker.log_metrics(0, {"objective": 0.5, "a/pixel_aupro": 0.5}, step=1)
    tracker.end_trial(0, "COMPLETE", artifacts=str(artifacts))
    tracker.start_trial(1, "ray1", {"noise.sigma": 0.2})
    tracker.end_trial(1, "FAILED", error="Traceback...\nTrainingError: non-finite loss")
    tracker.start_trial(2, "ray2", {"noise.sigma": 0.3})
    tracker.end_trial(2, None)  # interrupted with the driver


def _artifacts(tmp_path):
    folder = tmp_path / "ckpt" / "artifacts"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text("{}")
    return folder


def test_runs_are_nested_and_operations_idempotent(tmp_path, tracking_uri):
    paths = StudyPaths(tmp_path / "ray", "s")
    tracker = Tracker(paths, tracking_uri)
    _story(tracker, _artifacts(tmp_path))
    _story(Tracker(paths, tracking_uri), _artifacts(tmp_path / "again"))  # a resumed driver
    study, trials = mlflow_runs(tracking_uri, "s")
    assert len(trials) == 3
    by_number = {r.data.tags["optuna_trial_number"]: r for r in trials}
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {study.info.run_id}
    assert (
        by_number["0"].info.status == "FINISHED" and by_number["0"].data.tags["state"] == "COMPLETE"
    )
    assert (
        by_number["1"].info.status == "FAILED" and "non-finite" in by_number["1"].data.tags["error"]
    )
    assert (
        by_number["2"].info.status == "KILLED"
        and by_number["2"].data.tags["state"] == "INTERRUPTED"
    )
    assert by_number["0"].data.metrics["a/pixel_aupro"] == 0.5
    client = tracker.client
    nll = client.get_metric_history(by_number["0"].info.run_id, "train/teacher_nll")
    assert sorted((m.step, m.value) for m in nll) == [(1, 3.0), (2, 2.0), (3, 1.5)]
    assert [f.path for f in client.list_artifacts(by_number["0"].info.run_id)] == ["metrics.json"]
    assert [f.path for f in client.list_artifacts(by_number["1"].info.run_id)] == ["error.txt"]
    assert by_number["0"].info.artifact_uri.startswith((tmp_path / "mlflow-artifacts").as_uri())


def test_outbox_keeps_results_while_down_and_replays_them(tmp_path, tracking_uri):
    paths = StudyPaths(tmp_path / "ray", "s")
    down = Tracker(paths, DOWN)
    artifacts = _artifacts(tmp_path)
    _story(down, artifacts)
    assert down.pending == 10 and not down.rejected
    (artifacts / "metrics.json").unlink()  # the checkpoint is gone by the time it is back
    write_json(paths.runtime, {"tracking_uri": DOWN})
    assert main(["study", "sync", "s", "--storage-path", str(tmp_path / "ray")]) == 2  # down
    argv = ["study", "sync", "s", "--storage-path", str(tmp_path / "ray")]
    assert main([*argv, "--tracking-uri", tracking_uri]) == 0
    back = Tracker(paths, tracking_uri)
    assert back.pending == 0
    study, trials = mlflow_runs(tracking_uri, "s")
    assert sorted(r.data.tags["state"] for r in trials) == ["COMPLETE", "FAILED", "INTERRUPTED"]
    complete = next(r for r in trials if r.data.tags["state"] == "COMPLETE")
    assert [f.path for f in back.client.list_artifacts(complete.info.run_id)] == ["metrics.json"]
    assert not list((paths.outbox_files).glob("*"))
    state = read_json(paths.tracking_state)
    assert state["study_run_id"] == study.info.run_id and len(state["runs"]) == 3


def test_experiment_tags_config_and_the_best_trial_link(tmp_path, tracking_uri):
    from dhkd.study.design.spec import parse_spec
    from dhkd.study.tracking.presentation import NOTE, VIEW_TAG, experiment_tags

    tree = {"name": "s", "description": "Does noise help?", "preset": "tiny",
            "data": {"root": str(tmp_path), "dataset": "custom", "categories": ["a"]},
            "scientific": {"noise.sigma": {"type": "categorical", "values": [0.1, 0.2]}},
            "sampler": {"type": "grid"}}  # fmt: skip
    spec = parse_spec(tree)
    paths = StudyPaths(tmp_path / "ray", "s")
    tracker = Tracker(paths, tracking_uri)
    tracker.start_study("s", {}, {NOTE: "running"}, experiment_tags(spec))
    tracker.start_trial(0, "ray0", {"noise.sigma": 0.1}, tags={"dhkd.seeds": "0"},
                        config="noise:\n  sigma: 0.1\n")  # fmt: skip
    tracker.end_trial(0, "PRUNED", tags={"stop_reason": "asha at epoch 1"})
    tracker.end_study("FINISHED", {}, None, note="**Best trial**: {best}, 0.5", best=0)
    study, (trial,) = mlflow_runs(tracking_uri, "s")
    exp = tracker.client.get_experiment(study.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert exp.tags["mlflow.experiment.primaryMetric.name"] == "objective/pixel_aupro"
    view = __import__("json").loads(exp.tags[VIEW_TAG])
    assert "params.`noise.sigma`" in view["selectedColumns"]
    assert view["orderByKey"] == "metrics.`objective/pixel_aupro`" and not view["orderByAsc"]
    route = f"#/experiments/{exp.experiment_id}/runs/{trial.info.run_id}?workflowType="
    assert study.data.tags[NOTE].startswith(f"**Best trial**: [trial #0]({route}")
    assert trial.info.status == "FINISHED" and trial.data.tags["state"] == "PRUNED"
    assert trial.data.tags["dhkd.seeds"] == "0" and "dhkd.seeds" not in trial.data.params
    assert [f.path for f in tracker.client.list_artifacts(trial.info.run_id)] == ["config.yaml"]
