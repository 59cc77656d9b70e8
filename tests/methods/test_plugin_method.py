"""docs/methods.md followed for a method outside the package: registered, then trained by
`dhkd train` and run as a smoke study whose MLflow runs carry only the method's sections."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dhkd.cli import main
from dhkd.config import load_config
from dhkd.errors import ConfigError

PLUGIN = Path(__file__).resolve().parent / "plugin"


@pytest.fixture
def meanfeat(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN))
    from meanfeat_method import METHOD

    from dhkd.methods.registry import register_method

    return register_method(METHOD)


def test_registered_method_trains_through_the_cli(meanfeat, synthetic_root, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--data", str(synthetic_root), "--category", "stripes", "--preset", "tiny",
            "--method", "meanfeat", "--set", "meanfeat.scale=2", "--quiet",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.5 < metrics["test/image_auroc"] <= 1.0 and metrics["epochs"] == 1
    stored = yaml.safe_load((out / "config.yaml").read_text())
    assert stored["meanfeat"] == {"scale": 2.0} and "teacher" not in stored
    with pytest.raises(ConfigError, match=r"meanfeat\.scale belongs to method 'meanfeat'"):
        load_config("tiny", overrides={"meanfeat.scale": 2})


@pytest.mark.slow
def test_registered_method_runs_a_smoke_study(tmp_path):
    spec = {
        "name": "meanfeat_scale",
        "description": "a method registered through DHKD_METHODS",
        "method": "meanfeat",
        "preset": "tiny",
        "data": {"synthetic": {"categories": ["stripes"], "image_size": 64}},
        "scientific": {"meanfeat.scale": {"type": "categorical", "values": [1.0, 3.0]}},
        "sampler": {"type": "grid"},
        "scheduler": {"type": "none"},
    }
    path = tmp_path / "studies" / "meanfeat.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(spec))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "dhkd", "study", "run", str(path), "--smoke-test",
           "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray"), "--quiet"]  # fmt: skip
    path_list = os.pathsep.join([str(PLUGIN), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "DHKD_METHODS": "meanfeat_method",
           "PYTHONPATH": path_list}  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("meanfeat_scale-smoke")
    runs = client.search_runs([experiment.experiment_id], "tags.`dhkd.role` = 'trial'")
    assert len(runs) == 2
    for run in runs:
        params = run.data.params
        assert params["method"] == "meanfeat" and "meanfeat.scale" in params
        assert not any(k.split(".")[0] in ("teacher", "noise", "bikd", "knn") for k in params)
        assert "test/image_auroc" in run.data.metrics and "val/image_auroc" in run.data.metrics
