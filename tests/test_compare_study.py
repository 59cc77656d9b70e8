"""The DHKD vs BiKD comparison study runs in smoke mode and its report shows both methods.

The study runs in the test's process on the session's Ray (tests/conftest.py `ray_local`): no
fresh interpreter and no Ray start of its own, 35.2 s -> 27.5 s under load on 2 cores."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from dhkd.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_comparison_study_smoke_and_side_by_side_report(tmp_path, ray_local, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = str(REPO / "studies" / "paper" / "compare_dhkd_bikd.yaml")
    argv = ["study", "run", spec, "--smoke-test", "--tracking-uri", uri,
            "--storage-path", str(tmp_path / "ray"), "--name", "cmp", "--quiet"]  # fmt: skip
    rc = main(argv)  # in this process, on the session's Ray
    done = capsys.readouterr()
    assert rc == 0, done.out[-3000:] + done.err[-3000:]

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
