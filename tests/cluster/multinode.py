"""Processes for the multi-node tests: a fresh PostgreSQL database, an MLflow server on it, and a
Ray cluster whose nodes are separate `ray start --block` processes on this machine.

Every process is started in a session of its own, and stopping it signals the processes of that
session only: a worker node dies like a lost machine (raylet, agents and the trial workers,
which Ray puts in process groups of their own, all at once), and nothing of other Ray instances
on the machine is touched (never `ray stop`, which ends every Ray process of the user). Each
cluster has its own --temp-dir, so it never becomes the "current cluster" that a plain
`ray.init()` elsewhere would join.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
MLFLOW = [sys.executable, "-m", "mlflow"]
RAY = [sys.executable, "-m", "ray.scripts.scripts"]  # the `ray` command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], object], timeout: float, what: str, step: float = 0.5):
    """Poll `check` until it returns something truthy; TimeoutError naming `what` after that."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout:.0f} s")
        time.sleep(step)


def session_pids(sid: int) -> list[int]:
    """Processes of session `sid` (Ray starts actor workers in process groups of their own,
    but they stay in the session of the `ray start` that started their node)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # state ppid pgrp session ...
            pids.append(int(entry.name))
    return pids


def signal_session(sid: int, sig: int) -> int:
    """Send `sig` to every live process of session `sid`; returns how many got it."""
    sent = 0
    for pid in session_pids(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
            sent += 1
    return sent


def stop_session(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """SIGTERM every process of the session `proc` leads (started with start_new_session),
    then SIGKILL what is left after `grace` seconds."""
    stop_sessions([proc], grace)


def stop_sessions(procs: list[subprocess.Popen | None], grace: float = 10.0) -> None:
    """stop_session for several sessions at once: all get SIGTERM together and share the
    `grace` seconds (then 3 s for the rest of each session), so they stop in parallel."""
    procs = [p for p in procs if p is not None]
    for proc in procs:
        signal_session(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: not any(session_pids(p.pid) for p in procs), 3, "session exit", step=0.2)
    for proc in procs:
        signal_session(proc.pid, signal.SIGKILL)
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


# -- PostgreSQL ------------------------------------------------------------------------------
class PostgresUnavailable(RuntimeError):
    """Nothing listens on 127.0.0.1:5432 (the tests skip)."""


def _admin():
    import psycopg2

    try:
        conn = psycopg2.connect(PG_ADMIN, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        if "refused" in str(exc).lower():
            raise PostgresUnavailable(f"PostgreSQL is not running at {PG_ADMIN}: {exc}") from None
        raise
    conn.autocommit = True
    return conn


def create_database() -> str:
    """A new empty database dhkd_test_<random>; returns its name."""
    name = f"dhkd_test_{uuid.uuid4().hex[:10]}"
    _execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    _execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _execute(sql: str) -> None:
    conn = _admin()  # autocommit: CREATE/DROP DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


# -- MLflow server ---------------------------------------------------------------------------
class MlflowServer:
    """`mlflow server` on a backend store, bound to 127.0.0.1; stop() and start() again keep the
    port and the store (a server that goes down and comes back)."""

    def __init__(self, backend: str, artifacts: Path, log: Path, port: int | None = None):
        self.backend = backend
        self.artifacts = Path(artifacts)
        self.log = Path(log)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> None:
        self.launch()
        self.wait(timeout)

    def launch(self) -> None:
        """Start the process; `wait` until it answers (start other things meanwhile)."""
        cmd = [*MLFLOW, "server", "--backend-store-uri", self.backend,
               "--artifacts-destination", str(self.artifacts), "--serve-artifacts",
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]  # fmt: skip
        # No job runner (huey consumers, ~1.5 GB): studies do not use MLflow jobs.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)  # fmt: skip

    def wait(self, timeout: float = 120.0) -> None:
        wait_for(self._answers, timeout, f"mlflow server on {self.uri} (log: {self.log})")

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log.read_text()[-3000:]
            raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n{tail}")
        url = f"{self.uri}/api/2.0/mlflow/experiments/search?max_results=1"
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        stop_session(self.proc)
        self.proc = None


# -- Ray cluster -----------------------------------------------------------------------------
class RayCluster:
    """A head and worker nodes as separate `ray start --block` processes (sessions).

    Nodes are named; node "x" carries the custom resource {"x": 1} so the tests can tell the
    nodes apart (they share this machine's IP)."""

    def __init__(self) -> None:
        # short: Ray's Unix socket paths (<temp>/session_.../sockets/plasma_store) must fit
        self.temp = Path(tempfile.mkdtemp(prefix="dhkd-rc-", dir="/tmp"))
        self.port = free_port()
        self.nodes: dict[str, subprocess.Popen] = {}
        tmp = self.temp / "tmp"  # what a killed trial leaves in its temp folders goes with it
        tmp.mkdir()
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                    "TMPDIR": str(tmp)}  # fmt: skip

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self, name: str, args: list[str], cpus: int, gpus: int, env: dict | None) -> None:
        ports = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
                 "--runtime-env-agent-port", "--metrics-export-port"]  # fmt: skip
        cmd = [*RAY, "start", *args, "--num-cpus", str(cpus), "--num-gpus", str(gpus),
               "--resources", json.dumps({name: 1}), "--block", "--disable-usage-stats",
               "--temp-dir", str(self.temp)]  # fmt: skip
        for flag in ports:  # two nodes on one machine must not share agent ports
            cmd += [flag, str(free_port())]
        with (self.temp / f"{name}.log").open("a") as out:
            self.nodes[name] = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**self.env, **(env or {})},  # the node's processes (trials) inherit it
                start_new_session=True,
            )
        log = self.temp / f"{name}.log"
        wait_for(lambda: name in self.alive(), 120, f"Ray node {name} (log: {log})")

    def start_head(self, name: str = "head_node", cpus=1, gpus=0, env: dict | None = None):
        """`gpus` are declared to Ray only (fake ones work: Ray schedules, nothing checks)."""
        args = ["--head", "--port", str(self.port), "--include-dashboard=false"]
        self._start(name, args, cpus, gpus, env)

    def add_worker(self, name: str = "worker_node", cpus=1, gpus=0, env: dict | None = None):
        self._start(name, ["--address", self.address], cpus, gpus, env)

    def alive(self) -> dict[str, str]:
        """{node name: Ray node id (hex)} of the nodes the GCS reports ALIVE."""
        import ray._raylet as raylet
        from ray.core.generated.gcs_pb2 import GcsNodeInfo

        try:
            client = raylet.GcsClient(address=self.address)
            infos = client.get_all_node_info(timeout=5)
        except Exception:  # the head is not up yet (or gone)
            return {}
        found = {}
        for info in infos.values():
            if info.state != GcsNodeInfo.GcsNodeState.ALIVE:
                continue
            for name in self.nodes:
                if info.resources_total.get(name):
                    found[name] = info.node_id.hex()
        return found

    def kill(self, name: str) -> float:
        """SIGKILL every process of node `name` at once, its trials' workers included (a lost
        machine); returns the time."""
        proc = self.nodes.pop(name)
        killed = time.time()
        signal_session(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        return killed

    def shutdown(self, *others: subprocess.Popen | None) -> None:
        """Stop every node, and the `others` (e.g. the MLflow server), all at once."""
        stop_sessions([*self.nodes.values(), *others], grace=5)
        self.nodes.clear()
        shutil.rmtree(self.temp, ignore_errors=True)
