"""A study on a two-node Ray cluster logging to one PostgreSQL-backed MLflow server (issue "Running
on a Ray cluster", items 3-5): trials land on both nodes and are tagged with their node, a
worker node killed mid-trial costs nothing (the trial resumes on the head from its checkpoint in
the shared storage), a tracking server that is down at start stops the study before anything
runs, and one that goes down mid-study loses nothing: results wait in the outbox until
`dhkd study sync` sends them to the restarted server.

Both "nodes" are separate `ray start` process groups on this machine, so the storage folder is
shared as it would be over NFS. The module's fixture costs ~40-60 s (MLflow migrating a fresh
database, two Ray nodes); each study ~60-90 s on 2 busy cores.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from dhkd.cli import main

from .multinode import (
    MlflowServer,
    PostgresUnavailable,
    RayCluster,
    create_database,
    drop_database,
    free_port,
    wait_for,
)
from .study_process import StudyProcess

ENV_DEFAULTS = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT",
                "TUNE_GLOBAL_CHECKPOINT_S",
                "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S")  # fmt: skip


class Stack(NamedTuple):
    root: Path
    server: MlflowServer
    cluster: RayCluster
    nodes: dict[str, str]  # node name -> Ray node id


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A fresh database, `mlflow server` on it, and a Ray head + worker (one CPU each; the head
    also declares one GPU, which no trial here uses unless its spec asks for a fraction)."""
    try:
        db = create_database()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("multinode")
    backend = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{db}"
    server = MlflowServer(backend, root / "artifacts", root / "mlflow.log")
    cluster = RayCluster()
    try:
        server.launch()  # migrates the new database while the Ray nodes start
        for name, gpus in (("head_node", 1), ("worker_node", 0)):  # each its own feature cache
            env = {"DHKD_FEATURE_CACHE": str(root / f"features-{name}")}
            start = cluster.start_head if name == "head_node" else cluster.add_worker
            start(name, cpus=1, gpus=gpus, env=env)
        server.wait()
        yield Stack(root, server, cluster, cluster.alive())
    finally:
        cluster.shutdown(server.proc)  # the nodes and the server stop together
        server.proc = None
        drop_database(db)


def write_spec(path: Path, name: str, trials: int, epochs: int, resources: dict) -> Path:
    """A tiny real study (tiny random-init backbone, 64 px generated data, CPU), no pruning."""
    synthetic = {"categories": ["stripes"], "image_size": 64, "n_train": 8, "n_test_good": 4,
                 "n_test_defect": 4}  # fmt: skip
    fixed = {"data.image_size": 64, "data.max_train_images": 8, "optim.epochs": epochs,
             "optim.eval_every": 1, "optim.device": "cpu", "teacher.epochs": 1}  # fmt: skip
    tree = {
        "name": name,
        "description": "multi-node platform test",
        "preset": "tiny",
        "data": {"synthetic": synthetic},
        "fixed": fixed,
        "scientific": {"noise.sigma": {"type": "categorical", "values": [0.0, 0.2, 0.5]}},
        "sampler": {"type": "random", "seed": 0},
        "num_samples": trials,
        "scheduler": {"type": "none"},
        "resources": resources,
        "budget": {"max_concurrent": 2},
        "retries": 2,
    }
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def run_args(stack: Stack, spec: Path, tracking_uri: str) -> list[str]:
    storage = str(stack.root / "storage")
    return ["study", "run", str(spec), "--address", stack.cluster.address,
            "--tracking-uri", tracking_uri, "--storage-path", storage]  # fmt: skip


def study_runs(uri: str, name: str):
    """(study run, {trial number: trial run}) of experiment `name`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=100)
    studies = [r for r in runs if r.data.tags.get("dhkd.role") == "study"]
    assert len(studies) == 1, f"expected one study run, got {len(studies)}"
    trials = [r for r in runs if r.data.tags.get("dhkd.role") == "trial"]
    by_number = {int(r.data.tags["optuna_trial_number"]): r for r in trials}
    assert len(by_number) == len(trials), "two MLflow runs for one trial"
    return studies[0], by_number


def optuna_states(stack: Stack, name: str) -> dict[int, str]:
    import optuna

    url = f"sqlite:///{stack.root / 'storage' / name / 'study' / 'optuna.db'}"
    study = optuna.load_study(study_name=name, storage=url)
    return {t.number: t.state.name for t in study.get_trials(deepcopy=False)}


def assert_consistent(stack: Stack, name: str, uri: str, trials: int, epochs: int):
    """Every trial is one run nested under the one study run, final in MLflow and Optuna alike,
    with every epoch's metrics and the trial's artifacts; returns the trial runs by number."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    study, runs = study_runs(uri, name)
    assert study.info.status == "FINISHED"
    assert sorted(runs) == list(range(trials))
    assert optuna_states(stack, name) == dict.fromkeys(range(trials), "COMPLETE")
    for number, run in runs.items():
        assert run.data.tags["mlflow.parentRunId"] == study.info.run_id
        assert (run.info.status, run.data.tags["state"]) == ("FINISHED", "COMPLETE"), number
        history = client.get_metric_history(run.info.run_id, "objective/pixel_aupro")
        steps = {m.step for m in history}
        assert steps == set(range(1, epochs + 1)), f"trial {number} lost epochs: {steps}"
        names = {f.path for f in client.list_artifacts(run.info.run_id)}
        assert {"metrics.json", "maps_stripes_s0.png"} <= names, names
    return runs


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.timeout(400)
def test_trials_span_both_nodes_and_survive_a_lost_worker(stack):
    name, epochs = "two-nodes", 8
    spec = write_spec(stack.root / f"{name}.yaml", name, 2, epochs, {"cpu": 1, "gpu": 0})
    head, worker = stack.nodes["head_node"], stack.nodes["worker_node"]
    study = StudyProcess(run_args(stack, spec, stack.server.uri))
    try:  # one CPU per node and two trials at once: one trial runs on each node
        match = study.wait_line(rf"#(\d+) runs on node {worker[:12]}", timeout=240)
        killed_at = stack.cluster.kill("worker_node")  # the trial there is in its first epochs
        code = study.wait(timeout=240)
    finally:
        study.stop()
        (stack.root / f"{name}.out").write_text(study.output)
    assert code == 0, study.tail()
    lost = int(match.group(1))
    out = study.output
    assert f"#{lost} failed; retrying (1/2)" in out, study.tail()
    assert f"#{lost} runs on node {head[:12]}" in out  # retried on the head
    runs = assert_consistent(stack, name, stack.server.uri, trials=2, epochs=epochs)
    assert runs[lost].data.tags["node_history"] == f"{worker},{head}"
    assert runs[1 - lost].data.tags["node_history"] == head
    assert {r.data.tags["node_id"] for r in runs.values()} == {head}
    for node in ("head_node", "worker_node"):  # the default cache: node-local, on each node
        assert list((stack.root / f"features-{node}").glob("stripes-*.pt")), node
    resumed = json.loads((stack.root / "storage" / name / "study" / "summary.json").read_text())
    assert resumed["complete"] and resumed["tracking_pending"] == 0
    events = [f"{t - killed_at:+6.1f}s {line[:160]}" for t, line in study.lines
              if f"#{lost} " in line or "ActorUnavailableError" in line]  # fmt: skip
    print(f"\n[multinode] worker killed {killed_at - study.start:.0f} s into the study; trial "
          f"#{lost} (seconds after the kill):\n" + "\n".join(events))  # fmt: skip


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.timeout(400)
def test_tracking_outage_mid_study_waits_in_the_outbox_then_syncs(stack):
    """Also two trials asking for half a GPU each: both run at once on the head's one GPU."""
    name, epochs = "outage", 2
    spec = write_spec(stack.root / f"{name}.yaml", name, 2, epochs, {"cpu": 0.5, "gpu": 0.5})
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    study = StudyProcess(run_args(stack, spec, stack.server.uri), env=env)
    try:
        wait_for(lambda: _study_run_exists(stack.server.uri, name), 180, "the study run")
        stack.server.stop()  # down before any trial has started
        code = study.wait(timeout=300)
    finally:
        study.stop()
        (stack.root / f"{name}.out").write_text(study.output)
        if stack.server.proc is None:
            stack.server.start()  # back on the same port and database
    assert code == 0, study.tail()
    storage = stack.root / "storage"
    out = study.output
    assert f"tracking at {stack.server.uri} is down" in out, study.tail()
    assert "tracking operations could not be logged" in out, study.tail()
    assert f"dhkd study sync {name} --storage-path {storage}" in out
    outbox = storage / name / "study" / "outbox.jsonl"
    ops = [json.loads(line)["op"] for line in outbox.read_text().splitlines()]
    assert ops.count("trial_end") == 2 and ops[-1] == "study_end", ops

    argv = ["study", "sync", name, "--storage-path", str(storage)]
    assert main(argv) == 0
    assert not outbox.exists()
    runs = assert_consistent(stack, name, stack.server.uri, trials=2, epochs=epochs)
    head = stack.nodes["head_node"]
    assert {r.data.tags["node_history"] for r in runs.values()} == {head}  # the GPU is there
    spans = [_metric_span(stack.server.uri, r.info.run_id) for r in runs.values()]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], spans  # ran at once


def _study_run_exists(uri: str, name: str) -> bool:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return False
    return bool(client.search_runs([exp.experiment_id], "tags.`dhkd.role` = 'study'"))


def _metric_span(uri: str, run_id: str) -> tuple[float, float]:
    """(start, end) in ms of a trial: `train/compute_s` (seconds since it started) is logged with
    the time the driver got it, which the outbox keeps."""
    from mlflow.tracking import MlflowClient

    history = MlflowClient(uri).get_metric_history(run_id, "train/compute_s")
    return min(m.timestamp - 1000 * m.value for m in history), max(m.timestamp for m in history)


def test_tracking_down_at_start_stops_the_study_before_any_trial(tmp_path, capsys, monkeypatch):
    """Nothing is created and no Ray is started or joined (the --address is dead as well)."""
    for key in ENV_DEFAULTS:  # run_study sets these when unset: undone after the test
        monkeypatch.delenv(key, raising=False)
    spec = write_spec(tmp_path / "down.yaml", "down", 1, 2, {"cpu": 1, "gpu": 0})
    dead = f"http://127.0.0.1:{free_port()}"
    argv = ["study", "run", str(spec), "--tracking-uri", dead, "--address", "127.0.0.1:1",
            "--storage-path", str(tmp_path / "storage")]  # fmt: skip
    start = time.monotonic()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"the tracking URI {dead} does not answer" in err and "Traceback" not in err
    assert "mlflow server" in err  # says how to fix it
    assert not (tmp_path / "storage").exists()
    assert time.monotonic() - start < 30
    import ray

    assert not ray.is_initialized()
