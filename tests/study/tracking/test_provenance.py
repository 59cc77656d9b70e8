"""A trial's provenance: trials keep weights as the spec says (a PRUNED one its last snapshot),
and a smoke-study trial reproduces exactly, rescores as logged and shows in the report."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dhkd.cli import main
from dhkd.fingerprint import run_fingerprint
from dhkd.runs.reproduce import TOLERANCE
from dhkd.study.tracking.provenance import provenance_of

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def data(synthetic_root, tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(synthetic_root / "widget", root / "widget")
    return root


def test_trial_provenance_keeps_weights_as_the_spec_says(data, tmp_path):
    folder = tmp_path / "artifacts"
    folder.mkdir()
    fp = run_fingerprint(data, [("widget", 0)], "cpu")
    (folder / "fingerprint.json").write_text(json.dumps(fp))
    complete = provenance_of(str(folder), "COMPLETE", "complete")
    assert complete["exclude"] == [] and complete["tags"]["dhkd.fp.data"] == fp["data"]["digest"]
    assert complete["inputs"][0]["name"] == "widget"
    assert provenance_of(str(folder), "FAILED", "complete")["exclude"] == ["checkpoint.pt"]
    assert provenance_of(str(folder), "FAILED", "all")["exclude"] == []
    assert provenance_of(str(folder), "COMPLETE", "none")["exclude"] == ["checkpoint.pt"]


@pytest.mark.slow
def test_a_smoke_study_trial_reproduces_exactly(quickstart_smoke, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = quickstart_smoke.copy(tmp_path / "qs").uri  # the session's smoke study, our own copy
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("qs")
    complete = client.search_runs([exp.experiment_id], "tags.state = 'COMPLETE'")
    runs = [r for r in complete if r.data.tags.get("dhkd.role") != "reference"]
    assert runs and len(complete) == len(runs) + 1  # the trials and the knn reference
    run = runs[0]
    assert "checkpoint.pt" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert run.data.tags["dhkd.fp.device"].startswith("cpu:")
    assert {d.dataset.name for d in run.inputs.dataset_inputs} == {"stripes", "widget"}
    done = subprocess.run(
        [sys.executable, "-m", "dhkd", "reproduce", run.info.run_id, "--tracking-uri", uri,
         "--quiet"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [ln.split() for ln in done.stdout.splitlines() if "/" in ln.split(" ")[0]]
    assert len(rows) >= 6  # three metrics of each category
    assert all(abs(float(r[1]) - float(r[2])) <= TOLERANCE for r in rows)

    # the kept weights answer for other score settings: their own setting scores as logged
    scan = tmp_path / "scan.json"
    assert main(["rescore", run.info.run_id, "--tracking-uri", uri, "--quiet",
                 "--grid", "score.smoothing_sigma=2", "--out", str(scan)]) == 0  # fmt: skip
    units = json.loads(scan.read_text())["units"]
    assert {u["category"] for u in units} == {"stripes", "widget"}
    checked = [u["logged_gap"] for u in units if u["logged_gap"] is not None]
    assert checked and max(checked) <= TOLERANCE

    report = tmp_path / "report"
    assert main(["report", "qs", "--tracking-uri", uri, "--out", str(report), "--no-log"]) == 0
    with open(report / "provenance.csv") as f:
        measured = [r for r in csv.DictReader(f) if r["run_id"]]
    assert measured and all(r["device"].startswith("cpu:") for r in measured)
    assert all(len(r["code_commit"]) == 40 and r["data_fingerprint"] for r in measured)
    kept = sum(
        a.file_size for r in runs for a in client.list_artifacts(r.info.run_id)
        if a.path == "checkpoint.pt"
    )  # fmt: skip
    line = f"Weights kept: {len(runs)} of "
    assert line in (report / "README.md").read_text() and kept > 0


@pytest.mark.slow
def test_a_pruned_trial_keeps_its_last_snapshot_when_the_spec_asks(data, tmp_path):
    from types import SimpleNamespace

    import torch

    from dhkd.config import load_config
    from dhkd.inference import Predictor
    from dhkd.study.design.spec import StudySpec
    from dhkd.study.driver.callbacks import snapshot_weights
    from dhkd.study.state.outcome import PARAMS
    from dhkd.training.fit import fit_units

    spec = StudySpec.model_validate(
        {"name": "snap", "description": "d", "preset": "tiny", "keep_weights": "all",
         "data": {"root": str(data), "dataset": "custom", "categories": ["widget"]},
         "fixed": {"optim.epochs": 3}}
    )  # fmt: skip
    params = {"optim.lr": 0.002}
    states = {}
    cfg = load_config("tiny", overrides={"optim.epochs": 3, **params})
    fit_units(cfg, data, [("widget", 0)], progress=False,
              callback=lambda r: states.setdefault(r.epoch, r.state()))  # fmt: skip
    snapshot = tmp_path / "ckpt"
    snapshot.mkdir()
    torch.save(states[1], snapshot / "state.pt")  # stopped by ASHA after epoch 1
    trial = SimpleNamespace(checkpoint=SimpleNamespace(path=str(snapshot)),
                            config={PARAMS: params})  # fmt: skip
    folder = snapshot_weights(spec, trial, tmp_path / "kept")
    predictor = Predictor.from_checkpoint(Path(folder) / "checkpoint.pt")
    assert predictor.threshold is None and predictor.cfg.optim.lr == 0.002
    images = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    scores, maps = predictor.predict_images(images)
    assert maps.shape == (2, 64, 64) and np.isfinite(scores).all()
    assert predictor.decide(scores) == [None, None]
    no_state = SimpleNamespace(checkpoint=None, config={PARAMS: {}})
    assert snapshot_weights(spec, no_state, tmp_path / "none") is None
