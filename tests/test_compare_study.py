"""The DHKD vs BiKD comparison study runs in smoke mode and its report shows both methods."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dhkd.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_comparison_study_smoke_and_side_by_side_report(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = str(REPO / "studies" / "paper" / "compare_dhkd_bikd.yaml")
    cmd = [sys.executable, "-m", "dhkd", "study", "run", spec, "--smoke-test",
           "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray"), "--name", "cmp",
           "--quiet"]  # fmt: skip
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    from mlflow.tracking import MlflowClient  # each trial logs its own method's sections only

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("cmp")
    trials = client.search_runs([experiment.experiment_id], "tags.`dhkd.role` = 'trial'")
    for run in trials:
        sections = {k.split(".")[0] for k in run.data.params if "." in k}
        if run.data.params["method"] == "dhkd":
            assert "teacher" in sections and "bikd" not in sections
        else:
            assert "bikd" in sections and not sections & {"teacher", "noise", "student", "loss"}

    out = tmp_path / "report"
    assert main(["report", "cmp", "--tracking-uri", uri, "--out", str(out), "--no-log"]) == 0
    for metric in ("image_auroc", "pixel_auroc", "pixel_aupro"):
        with open(out / "tables" / f"{metric}.csv") as fh:
            rows = list(csv.DictReader(fh))
        header = rows[0].keys()
        assert "method=dhkd mean" in header and "method=bikd mean" in header
        average = next(r for r in rows if r["category"] == "Average")
        for method in ("dhkd", "bikd"):
            assert 0.0 <= float(average[f"method={method} mean"]) <= 100.0
    table = (out / "tables" / "pixel_aupro.md").read_text()
    assert "method dhkd" in table and "method bikd" in table
