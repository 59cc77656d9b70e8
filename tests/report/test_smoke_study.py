"""Acceptance on a real study: the quickstart smoke study, then `dhkd report qs`; every number
in the CSV tables equals the MLflow metric (or metrics.json units) that provenance names."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _units(client, run_id: str, cache: dict) -> list[dict]:
    if run_id not in cache:
        path = client.download_artifacts(run_id, "metrics.json", str(cache["dir"] / run_id))
        cache[run_id] = json.loads(Path(path).read_text())["units"]
    return cache[run_id]


def _seed_values(units: list[dict], row: str, metric: str) -> list[float]:
    """Per seed, in percent: the row's category, or the mean over categories (Average: test,
    Validation: the units' validation metrics)."""
    if row not in ("Average", "Validation"):
        return [100 * u[metric] for u in units if u["category"] == row]
    seeds = sorted({u["seed"] for u in units})
    get = (lambda u: u["val"][metric]) if row == "Validation" else (lambda u: u[metric])
    return [100 * np.mean([get(u) for u in units if u["seed"] == s]) for s in seeds]


def test_report_of_the_smoke_study_traces_every_number(quickstart_report, tmp_path):
    from mlflow.tracking import MlflowClient

    # `dhkd report qs --tracking-uri URI --out OUT --storage-path RAY` on a copy of the
    # session's quickstart smoke study, run (and checked to exit 0) by the fixture
    study, out = quickstart_report
    uri = study.uri
    client = MlflowClient(uri)
    prov = list(csv.DictReader((out / "provenance.csv").read_text().splitlines()))
    by_cell = {(p["table"], p["row"], p["column"], p["quantity"]): p for p in prov}
    cache: dict = {"dir": tmp_path / "units"}
    checked = 0
    for metric in ("image_auroc", "pixel_auroc", "pixel_aupro"):
        table = (out / "tables" / f"{metric}.csv").read_text().splitlines()
        for row in csv.DictReader(table):
            for name, text in row.items():
                if name == "category" or not text or name.endswith(" n"):
                    continue
                column, quantity = name.rsplit(" ", 1)
                p = by_cell[(metric, row["category"], column, quantity)]
                run = client.get_run(p["run_id"])
                if quantity == "mean":
                    assert text == f"{100 * run.data.metrics[p['metric_key']]:.1f}"
                    assert float(p["value"]) == 100 * run.data.metrics[p["metric_key"]]
                else:  # std: recomputed from the run's metrics.json units
                    units = _units(client, p["run_id"], cache)
                    values = _seed_values(units, row["category"], metric)
                    assert float(text) == pytest.approx(np.std(values, ddof=1), abs=0.051)
                checked += 1
        assert {"Average", "Validation"} <= {r["category"] for r in csv.DictReader(table)}
        assert "reference mean" in table[0]  # the spec's reference is a column
    assert checked >= 3 * 4  # 2 categories + Average + Validation, 3 tables
    readme = (out / "README.md").read_text()
    assert "knn (reference)" in readme and "selected on held-out train/good images" in readme
    assert "vs knn (reference)" in readme  # each variant tested against the reference
    compute = re.search(r"the reference: 0 GPU-h, ([0-9.e-]+) CPU-h, ([0-9.e-]+) trial-h", readme)
    assert compute and float(compute[1]) > 0 and float(compute[2]) > 0  # its compute counts
    for figure in ("param_student.variant", "qualitative", "parallel", "history"):
        assert (out / "figures" / f"{figure}.png").stat().st_size > 10_000
    assert "Optuna study from optuna.db" in (out / "README.md").read_text()
    logged = {
        a.path
        for a in client.list_artifacts(
            json.loads((out / "report.json").read_text())["study_run_id"], "report/tables"
        )
    }
    assert "report/tables/pixel_aupro.csv" in logged
