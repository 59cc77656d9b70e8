"""`dhkd study status` on a study folder built by hand (Optuna trials, live.json, a driver lock):
counts by state, running trials, best so far, ETA, compute; read-only; the gpu_hours budget."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
import yaml
from study_helpers import fake_spec_tree

from dhkd.cli import main
from dhkd.study.design.spec import parse_spec, spec_tree
from dhkd.study.driver.searcher import open_optuna_study
from dhkd.study.state.layout import StudyPaths, write_json
from dhkd.study.state.live import gpu_budget_left, live_path
from dhkd.study.state.status import format_status, study_status


def _study(tmp_path, alive=True, **changes):
    tree = fake_spec_tree(tmp_path / "data", num_samples=5, sampler={"type": "random"}, **changes)
    spec = parse_spec(tree)
    paths = StudyPaths(tmp_path / "ray", spec.name)
    paths.dir.mkdir(parents=True)
    paths.spec.write_text(yaml.safe_dump(spec_tree(spec)))
    study = open_optuna_study(paths, spec)
    for value in (0.5, 0.7):  # two finished trials
        trial = study.ask()
        trial.set_user_attr("params", {"noise.sigma": value})
        study.tell(trial, value)
    running = study.ask()
    running.set_user_attr("params", {"noise.sigma": 0.2})
    now = time.time()
    attempt = {"wall_s": 100.0, "cpu_s": 90.0}
    write_json(live_path(paths), {"trials": {
        "0": {"status": "COMPLETE", "device": "cpu: x", "attempts": {"a": attempt}},
        "1": {"status": "COMPLETE", "device": "cpu: x", "attempts": {"b": attempt}},
        "2": {"status": "RUNNING", "epoch": 1, "node": "n" * 20, "node_ip": "10.0.0.2",
              "started": now - 30, "device": "cpu: x", "attempts": {"c": {"wall_s": 30.0}}},
    }})  # fmt: skip
    pid = os.getpid() if alive else 2**22 + 1
    write_json(paths.dir / "driver.lock", {"host": socket.gethostname(), "pid": pid,
                                            "since": now - 300, "heartbeat": now})  # fmt: skip
    return spec, paths


def test_status_counts_running_best_eta_and_compute(tmp_path):
    _, paths = _study(tmp_path)
    status = study_status(paths)
    assert status["counts"] == {"COMPLETE": 2, "PRUNED": 0, "FAILED": 0, "RUNNING": 1,
                                "INTERRUPTED": 0, "WAITING": 2}  # fmt: skip
    (running,) = status["running"]
    assert running["number"] == 2 and running["epoch"] == 1 and running["epochs"] == 4
    assert 29 <= running["elapsed_s"] <= 60
    assert status["best"]["number"] == 1 and status["best"]["value"] == 0.7
    assert status["compute"]["cpu_s"] == 180.0 and status["compute"]["wall_s"] == 230.0
    assert status["driver"]["alive"] and status["eta_s"] is not None
    text = format_status(status)
    assert "trials of 5: 2 COMPLETE, 1 RUNNING, 2 WAITING" in text
    assert "#2 RUNNING epoch 1/4 node nnnnnnnnnnnn (10.0.0.2)" in text
    assert "best so far: #1 pixel_aupro=0.7000 noise.sigma=0.7" in text and "ETA: " in text


def test_status_of_a_killed_driver_shows_interrupted_trials(tmp_path):
    _, paths = _study(tmp_path, alive=False)
    status = study_status(paths)
    assert not status["driver"]["alive"] and status["eta_s"] is None
    assert status["counts"]["INTERRUPTED"] == 1 and status["counts"]["RUNNING"] == 0
    assert "driver: gone" in format_status(status)


def test_status_command_writes_nothing(tmp_path, capsys):
    _, paths = _study(tmp_path)
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in paths.experiment.rglob("*")}
    argv = ["study", "status", "fake", "--storage-path", str(tmp_path / "ray"), "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["COMPLETE"] == 2
    after = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in paths.experiment.rglob("*")}
    assert after == before


def test_status_of_a_missing_study_is_a_clear_error(tmp_path, capsys):
    assert main(["study", "status", "nope", "--storage-path", str(tmp_path)]) == 2
    assert "no study at" in capsys.readouterr().err


@pytest.mark.parametrize(("cap_hours", "allowed"), [(0.06, True), (0.05, False)])
def test_gpu_budget_stops_starting_trials_that_would_pass_it(tmp_path, cap_hours, allowed):
    resources = {"cpu": 1, "gpu": 0.5}
    spec, paths = _study(tmp_path, resources=resources,
                         budget={"gpu_hours": cap_hours, "max_concurrent": 1})  # fmt: skip
    live = json.loads(live_path(paths).read_text())
    for rec in live["trials"].values():
        rec["device"] = "cuda: NVIDIA H100"
    write_json(live_path(paths), live)
    # used: 2 x 100 s x 0.5 = 100 GPU-s, the running one at least the mean (50), one more
    # at the mean (50): 200 GPU-s, so a cap of 216 s (0.06 h) allows it and 180 s does not
    assert gpu_budget_left(paths, spec) is allowed


def test_gpu_hours_needs_a_gpu_share(tmp_path):
    from dhkd.errors import ConfigError

    with pytest.raises(ConfigError, match=r"budget\.gpu_hours"):
        parse_spec(fake_spec_tree(tmp_path, budget={"gpu_hours": 2}))
