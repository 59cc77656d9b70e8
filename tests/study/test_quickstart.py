"""Acceptance: the README's study command (as a smoke test) finishes, and MLflow holds one study
run with its trials nested, none RUNNING, each with its anomaly-map grids."""

from __future__ import annotations

import pytest
from study_helpers import mlflow_runs

pytestmark = pytest.mark.slow


def test_quickstart_smoke(quickstart_smoke):
    uri = quickstart_smoke.uri  # the session's smoke study (tests/conftest.py), read-only here
    stdout = quickstart_smoke.stdout
    assert "best: trial #" in stdout and "dhkd ui --tracking-uri" in stdout

    study, runs = mlflow_runs(uri, "qs")
    assert study.info.status == "FINISHED"
    assert len(runs) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {study.info.run_id}
    assert all(r.info.status != "RUNNING" for r in runs)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    for run in runs:
        assert run.data.params["backbone.name"] == "tiny"
        assert run.data.tags["dhkd.categories"] == "stripes,widget"
        assert not [k for k in run.data.params if k.startswith("study.")]  # bookkeeping: tags
        assert "config.yaml" in {f.path for f in client.list_artifacts(run.info.run_id)}
        nll = client.get_metric_history(run.info.run_id, "train/teacher_nll")  # one per epoch
        teacher_epochs = int(run.data.params["teacher.epochs"])
        assert sorted(m.step for m in nll) == list(range(1, teacher_epochs + 1))
        if run.data.tags["state"] == "COMPLETE":
            names = {f.path for f in client.list_artifacts(run.info.run_id)}
            assert {"maps_stripes_s0.png", "maps_widget_s0.png", "metrics.json"} <= names
            assert 0.0 <= run.data.metrics["test/stripes/pixel_aupro"] <= 1.0
    assert (quickstart_smoke.storage / "features").is_dir()  # the node-local feature cache was used
