"""The outbox while a driver appends and `dhkd study sync` replays at the same time: every
operation arrives once and in order; replayed metrics add no second point at a step."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest
from study_helpers import mlflow_runs

from dhkd.cli import main
from dhkd.study.state.layout import StudyPaths, write_json
from dhkd.study.tracking.outbox import Outbox
from dhkd.study.tracking.tracker import Tracker

DOWN = "http://127.0.0.1:9"  # nothing listens on the discard port
STEPS = 150

WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from dhkd.study.state.layout import StudyPaths
    from dhkd.study.tracking.tracker import Tracker

    paths = StudyPaths(Path(sys.argv[1]), "s")
    tracker = Tracker(paths, sys.argv[2])
    tracker.start_study("s", {}, {})
    tracker.start_trial(0, "ray0", {"noise.sigma": 0.1})
    Path(sys.argv[3]).touch()
    for step in range(1, int(sys.argv[4]) + 1):
        tracker.log_metrics(0, {"objective": step / 1000, "loss": 1.0 / step}, step=step)
        time.sleep(0.01)
    tracker.end_trial(0, "COMPLETE")
    """
)


@pytest.fixture(autouse=True)
def _no_http_retries(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")


@pytest.mark.slow
def test_sync_in_a_loop_while_the_driver_appends_loses_nothing(tmp_path, tracking_uri):
    storage = tmp_path / "ray"
    paths = StudyPaths(storage, "s")
    write_json(paths.runtime, {"tracking_uri": DOWN})
    started = tmp_path / "started"
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(storage), DOWN, str(started), str(STEPS)], env=env
    )
    argv = ["study", "sync", "s", "--storage-path", str(storage), "--tracking-uri", tracking_uri]
    syncs = 0
    deadline = time.time() + 120
    while not started.exists() and writer.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    while writer.poll() is None and time.time() < deadline:
        assert main(argv) == 0
        syncs += 1
    assert writer.wait(30) == 0
    assert main(argv) == 0
    assert syncs >= 2, "the writer ended before sync ran twice: nothing was tested"
    assert Outbox(paths.outbox, paths.outbox_files).read() == []

    _, trials = mlflow_runs(tracking_uri, "s")
    assert len(trials) == 1 and trials[0].data.tags["state"] == "COMPLETE"
    client = Tracker(paths, tracking_uri).client
    history = client.get_metric_history(trials[0].info.run_id, "objective")
    assert sorted(m.step for m in history) == list(range(1, STEPS + 1))


def test_a_replayed_epoch_adds_no_second_point(tmp_path, tracking_uri):
    paths = StudyPaths(tmp_path / "ray", "s")
    tracker = Tracker(paths, tracking_uri)
    tracker.start_study("s", {}, {})
    tracker.start_trial(0, "ray0", {})
    for step in (1, 2, 3):
        tracker.log_metrics(0, {"objective": step / 10}, step=step)
    # a driver restored from a snapshot taken after epoch 1 reports epochs 2 and 3 again
    again = Tracker(paths, tracking_uri)
    again.start_trial(0, "ray0b", {})
    for step in (2, 3, 4):
        again.log_metrics(0, {"objective": step / 10, "loss": 1.0}, step=step)
    run_id = again.state["runs"]["0"]["run_id"]
    objective = again.client.get_metric_history(run_id, "objective")
    assert sorted(m.step for m in objective) == [1, 2, 3, 4]
    assert sorted(m.step for m in again.client.get_metric_history(run_id, "loss")) == [2, 3, 4]


def test_a_killed_replay_is_finished_by_the_next_one(tmp_path):
    box = Outbox(tmp_path / "outbox.jsonl", tmp_path / "files")
    for i in range(5):
        box.append({"op": "x", "i": i})
    seen: list[int] = []

    def crash_after_two(op):
        if len(seen) == 2:
            raise KeyboardInterrupt  # the replaying process dies here
        seen.append(op["i"])
        return True

    with pytest.raises(KeyboardInterrupt):
        box.replay(crash_after_two)
    box.append({"op": "x", "i": 5})  # appended after the crash
    assert [op["i"] for op in box.read()] == [0, 1, 2, 3, 4, 5]
    applied: list[int] = []
    assert box.replay(lambda op: applied.append(op["i"]) or op["i"] != 4) == 2
    assert applied == [0, 1, 2, 3, 4] and [op["i"] for op in box.read()] == [4, 5]
