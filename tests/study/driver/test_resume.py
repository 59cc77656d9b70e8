"""A study's life from other shells: `dhkd study status` mid-study, a second driver refused
(exit 2, naming the holder), SIGKILL of the driver, and the same command again: the study
completes with exactly num_samples trials, one MLflow run per trial nested under one study run,
none RUNNING, no metric logged twice at a step, Optuna's states match MLflow's (pitfalls 1, 2,
3), and each trial's compute is logged.

The drivers run in subprocesses (each starts its own Ray); `dhkd study status` and the refused
second driver run in the test's own process, another one than the driver's, which saves a fresh
interpreter's imports (seconds each on 2 cores) per call."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest
import yaml
from study_helpers import mlflow_runs, optuna_trials

from dhkd.cli import main

pytestmark = pytest.mark.slow

SPEC = {
    "name": "killme",
    "description": "resume after SIGKILL",
    "preset": "tiny",
    "data": {
        "synthetic": {
            "categories": ["stripes"],
            "image_size": 64,
            "n_train": 8,
            "n_test_good": 4,
            "n_test_defect": 4,
        }
    },
    "fixed": {"optim.epochs": 3, "optim.eval_every": 1, "teacher.epochs": 1, "optim.device": "cpu"},
    "scientific": {"noise.sigma": {"type": "categorical", "values": [0.0, 0.2, 0.4]}},
    "sampler": {"type": "grid", "seed": 0},
    "scheduler": {"type": "none"},
    "budget": {"max_concurrent": 1},
}


def _command(tmp_path, spec_file, uri):
    return [sys.executable, "-m", "dhkd", "study", "run", str(spec_file), "--tracking-uri", uri,
            "--storage-path", str(tmp_path / "ray"), "--num-cpus", "2"]  # fmt: skip


def _env():
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}


def test_sigkill_then_rerun_completes_the_study(tmp_path, tracking_uri, capsys):
    spec_file = tmp_path / "killme.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    cmd = _command(tmp_path, spec_file, tracking_uri)
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=_env(), start_new_session=True)  # fmt: skip
    lines: list[str] = []
    done = threading.Event()

    def watch():
        for line in first.stdout:
            lines.append(line)
            if "#1 epoch 1 " in line:  # the second trial is mid-way
                done.set()

    threading.Thread(target=watch, daemon=True).start()
    assert done.wait(300), "the second trial did not report:\n" + "".join(lines[-40:])
    os.kill(first.pid, signal.SIGSTOP)  # freeze the driver: what status reads stands still
    truth = {"COMPLETE": 0, "RUNNING": 0}
    for t in optuna_trials(tmp_path / "ray", "killme"):
        truth[t.state.name] += 1
    assert truth["RUNNING"] == 1, truth
    status = _status(tmp_path, capsys)
    assert status["driver"] and status["driver"]["alive"], status
    assert status["driver"]["pid"] == first.pid
    counts = status["counts"]
    assert counts["COMPLETE"] == truth["COMPLETE"] >= 1 and counts["RUNNING"] == 1
    assert counts["WAITING"] == 3 - truth["COMPLETE"] - 1
    (running,) = status["running"]
    assert running["number"] == truth["COMPLETE"] and running["epoch"] >= 1
    assert status["best"] is not None and status["compute"]["cpu_s"] > 0

    rc = main(cmd[3:])  # a second driver, in this process: refused at the lock
    other = capsys.readouterr()
    assert rc == 2, other.out[-2000:] + other.err[-2000:]
    assert f"pid {first.pid}" in other.err and "host " in other.err
    assert "since " in other.err
    assert first.poll() is None  # the refused driver left the first one alone

    os.kill(first.pid, signal.SIGKILL)
    first.wait(30)
    assert first.returncode == -signal.SIGKILL
    status = _status(tmp_path, capsys)
    assert not status["driver"]["alive"] and status["counts"]["INTERRUPTED"] == 1

    second = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=400)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    resumed = second.stdout + second.stderr
    assert "Traceback" not in resumed and "Error handling checkpoint" not in resumed, resumed
    trials = optuna_trials(tmp_path / "ray", "killme")
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    assert sorted(t.params["noise.sigma"] for t in trials) == [0.0, 0.2, 0.4]

    study, runs = mlflow_runs(tracking_uri, "killme")
    assert study.info.status == "FINISHED"
    assert len(runs) == 3
    assert all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {study.info.run_id}
    by_number = {int(r.data.tags["optuna_trial_number"]): r for r in runs}
    assert sorted(by_number) == [0, 1, 2]
    for t in trials:
        run = by_number[t.number]
        assert run.data.tags["state"] == "COMPLETE"
        assert run.data.tags["trial_id"] == t.user_attrs["ray_trial_id"]
        assert float(run.data.metrics["objective/pixel_aupro"]) == pytest.approx(t.value)
        assert run.data.metrics["cost/cpu_s"] > 0 and run.data.tags["device"].startswith("cpu")
    client = __import__("mlflow").tracking.MlflowClient(tracking_uri)
    for run in runs:
        for key in run.data.metrics:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert len(steps) == len(set(steps)), f"{key} logged twice at a step: {steps}"
    status = _status(tmp_path, capsys)
    assert status["driver"] is None and status["counts"]["COMPLETE"] == 3
    assert sum(status["counts"].values()) == 3


def _status(tmp_path, capsys) -> dict:
    """`dhkd study status killme --json`, run in this process (another one than the driver's)."""
    capsys.readouterr()
    rc = main(["study", "status", "killme", "--json", "--storage-path", str(tmp_path / "ray")])
    done = capsys.readouterr()
    assert rc == 0, done.err[-2000:]
    return json.loads(done.out)
