"""The spec's reference: measured once per (category, seed) under the study's protocol and
settings, logged to MLflow once as its own run nested under the study run, with its compute,
fingerprint and dataset inputs as a trial's."""

from __future__ import annotations

import pytest
from study_helpers import mlflow_runs

from dhkd.study.design.spec import parse_spec
from dhkd.study.driver.reference import measure_reference, reference_config, reference_dir
from dhkd.study.state.layout import StudyPaths
from dhkd.study.tracking.tracker import Tracker


def _spec(root, **changes):
    tree = {
        "name": "ref",
        "description": "a reference column",
        "preset": "tiny",
        "data": {"root": str(root), "dataset": "custom", "categories": ["stripes", "widget"]},
        "seeds": [0, 1],
        "fixed": {
            "optim.epochs": 2,
            "data.image_size": 48,
            "score.smoothing_sigma": 2.0,
            "teacher.depth": 2,
        },
        "scheduler": {"type": "none"},
        "selection": {"protocol": "test_fold", "val_fraction": 0.4},
        "reference": "knn",
        **changes,
    }
    return parse_spec(tree)


def test_the_reference_shares_the_protocol_and_the_shared_settings(synthetic_root):
    cfg = reference_config(_spec(synthetic_root))
    assert cfg.method == "knn" and (cfg.data.image_size, cfg.score.smoothing_sigma) == (48, 2.0)
    assert (cfg.selection.protocol, cfg.selection.val_fraction) == ("test_fold", 0.4)
    assert "teacher" not in cfg.model_dump()  # another method's fixed keys stay with it
    assert measure_reference(_spec(synthetic_root, reference=None), None, None, "", True) is None


@pytest.mark.slow
def test_measured_once_and_logged_once_as_its_own_run(synthetic_root, tmp_path, tracking_uri):
    spec = _spec(synthetic_root)
    paths = StudyPaths(tmp_path / "ray", spec.name)
    paths.dir.mkdir(parents=True)
    tracker = Tracker(paths, tracking_uri)
    tracker.start_study(spec.name, {"spec.name": spec.name}, {})
    op = measure_reference(spec, paths, synthetic_root, "", quiet=True)
    done = reference_dir(paths) / "metrics.json"
    stamp = done.stat().st_mtime_ns
    tracker.submit(op)
    again = measure_reference(spec, paths, synthetic_root, "", quiet=True)  # a resumed study
    assert done.stat().st_mtime_ns == stamp and again["metrics"] == op["metrics"]
    tracker.submit(again)
    tracker.flush()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("ref")
    runs = client.search_runs([exp.experiment_id], "tags.`dhkd.role` = 'reference'")
    assert len(runs) == 1
    run = runs[0]
    study, _ = mlflow_runs(tracking_uri, "ref")
    assert run.data.tags["mlflow.parentRunId"] == study.info.run_id
    assert run.data.tags["state"] == "COMPLETE" and run.info.status == "FINISHED"
    assert run.data.params["method"] == "knn"
    assert run.data.params["selection.protocol"] == "test_fold"
    for key in ("test/widget/pixel_aupro", "val/stripes/image_auroc", "objective/pixel_aupro"):
        assert 0.0 <= run.data.metrics[key] <= 1.0
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "maps_stripes_s1.png"} <= names
    assert run.data.metrics["cost/wall_s"] > 0 and run.data.metrics["cost/cpu_s"] > 0
    assert run.data.metrics["cost/gpu_s"] == 0.0 and run.data.tags["device"].startswith("cpu:")
    assert run.data.tags["dhkd.fp.device"].startswith("cpu:")  # fingerprint, as a trial's
    assert {d.dataset.name for d in run.inputs.dataset_inputs} == {"stripes", "widget"}


@pytest.mark.slow
def test_an_extended_study_measures_and_logs_its_reference_again(
    synthetic_root, tmp_path, tracking_uri
):
    """More seeds: the reference is measured again on every unit, the folder swapped whole,
    and logged again to the same MLflow run; a resume after that logs nothing new."""
    import json
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    from dhkd.study.driver.reference import covers, measured_units

    spec = _spec(synthetic_root, seeds=[0])
    paths = StudyPaths(tmp_path / "ray", spec.name)
    paths.dir.mkdir(parents=True)
    tracker = Tracker(paths, tracking_uri)
    tracker.start_study(spec.name, {"spec.name": spec.name}, {})
    tracker.submit(measure_reference(spec, paths, synthetic_root, "", quiet=True))
    tracker.flush()
    assert measured_units(paths) == {("stripes", 0), ("widget", 0)}

    extended = _spec(synthetic_root, seeds=[0, 1])
    assert covers(paths, spec) and not covers(paths, extended)
    op = measure_reference(extended, paths, synthetic_root, "", quiet=True)
    assert covers(paths, extended) and len(op["units"]) == 4
    assert not list(paths.dir.glob(".reference*"))  # the old folder swapped out and removed
    tracker.submit(op)
    tracker.flush()
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("ref")
    (run,) = client.search_runs([exp.experiment_id], "tags.`dhkd.role` = 'reference'")
    logged = client.download_artifacts(run.info.run_id, "metrics.json", str(tmp_path))
    assert len(json.loads(Path(logged).read_text())["units"]) == 4
    state = json.loads(paths.tracking_state.read_text())
    assert state["reference_units"] == [
        ["stripes", 0],
        ["stripes", 1],
        ["widget", 0],
        ["widget", 1],
    ]
    history = client.get_metric_history(run.info.run_id, "cost/wall_s")
    assert len(history) == 2  # the first measurement's and the second's
    tracker.submit(measure_reference(extended, paths, synthetic_root, "", quiet=True))
    tracker.flush()
    assert len(client.get_metric_history(run.info.run_id, "cost/wall_s")) == 2  # not again
