"""`dhkd cluster check`: the repo's cluster.yaml passes offline; broken copies fail by key path."""

from __future__ import annotations

import copy
import http.server
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dhkd.cli import main
from dhkd.cluster import check_cluster, check_config
from dhkd.cluster.endpoints import storage_findings, tracking_findings
from dhkd.cluster.findings import Finding, mask

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_YAML = REPO_ROOT / "cluster.yaml"
GPU_RES = ("available_node_types", "gpu_worker", "resources")


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The repo's cluster.yaml, parsed; cwd is the repo root (file_mounts are relative)."""
    monkeypatch.chdir(REPO_ROOT)
    return yaml.safe_load(CLUSTER_YAML.read_text())


def _errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "error"]


def _check(config: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> list[Finding]:
    broken = copy.deepcopy(config)
    change(broken)
    return check_config(broken)[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _set_mlflow_host(config: dict[str, Any], host: str | None) -> None:
    cmds = config["head_start_ray_commands"]
    i = next(i for i, c in enumerate(cmds) if "mlflow server" in c)
    old = '--host "$HEAD_PRIVATE_IP"'
    assert old in cmds[i]
    cmds[i] = cmds[i].replace(old, f"--host {host}" if host else "")


def test_repo_cluster_yaml_passes(config: dict[str, Any]) -> None:
    findings, prepared = check_config(config)
    assert _errors(findings) == []
    wheres = {f.where for f in findings if f.level == "ok"}
    assert {"schema", "ray", "resources", "workers", "setup_commands", "secrets"} <= wheres
    assert prepared is not None and prepared["available_node_types"]["cpu_head"]["max_workers"] == 0


def test_offline_without_network_or_credentials(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Schema + Ray's prepare/validate + project checks make no connection and need no AWS."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the offline check tried to use the network")

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    findings, prepared = check_config(config)
    assert _errors(findings) == [] and prepared is not None


def test_misspelled_keys_name_the_key_and_the_closest_valid_one(config: dict[str, Any]) -> None:
    def change(c: dict[str, Any]) -> None:
        c["max_wrokers"] = c.pop("max_workers")
        c["available_node_types"]["gpu_worker"]["min_wrokers"] = 0

    errors = {f.where: f for f in _errors(_check(config, change))}
    assert "did you mean 'max_workers'" in errors["max_wrokers"].message
    node_key = "available_node_types.gpu_worker.min_wrokers"
    assert "'min_wrokers'" in errors[node_key].message
    assert "min_workers" in errors[node_key].fix


def test_fractional_gpu_resource_fails_with_the_study_spec_fix(config: dict[str, Any]) -> None:
    errors = _errors(
        _check(config, lambda c: c[GPU_RES[0]]["gpu_worker"]["resources"].update(GPU=0.5))
    )
    (gpu,) = [f for f in errors if f.where == ".".join((*GPU_RES, "GPU"))]
    assert "0.5" in gpu.message and "integer" in gpu.message
    assert "gpu: 0.25" in gpu.fix


def test_missing_or_misnamed_head_node_type_fails(config: dict[str, Any]) -> None:
    missing = _errors(_check(config, lambda c: c.pop("head_node_type")))
    assert any(f.where == "head_node_type" and "missing" in f.message for f in missing)
    typo = _errors(_check(config, lambda c: c.update(head_node_type="cpu_haed")))
    assert any(f.where == "head_node_type" and "'cpu_head'" in f.fix for f in typo)


def test_setup_commands_inside_a_node_type_points_to_worker_setup_commands(
    config: dict[str, Any],
) -> None:
    errors = _errors(
        _check(config, lambda c: c[GPU_RES[0]]["gpu_worker"].update(setup_commands=["true"]))
    )
    (err,) = [f for f in errors if f.where.endswith("gpu_worker.setup_commands")]
    assert "worker_setup_commands" in err.fix


def test_missing_resources_and_gpu_instance_without_gpu_fail(config: dict[str, Any]) -> None:
    errors = _errors(_check(config, lambda c: c[GPU_RES[0]]["gpu_worker"].update(resources={})))
    wheres = {f.where for f in errors}
    assert {".".join((*GPU_RES, "CPU")), ".".join((*GPU_RES, "GPU"))} <= wheres


@pytest.mark.parametrize("host", ["0.0.0.0", "'::'", "127.0.0.1", "localhost", "8.8.8.8", None])
def test_mlflow_server_must_bind_a_private_address(
    config: dict[str, Any], host: str | None
) -> None:
    errors = _errors(_check(config, lambda c: _set_mlflow_host(c, host)))
    (err,) = [f for f in errors if f.where.startswith("head_start_ray_commands")]
    assert "HEAD_PRIVATE_IP" in err.fix


def test_mlflow_server_fixed_private_ip_is_only_a_warning(config: dict[str, Any]) -> None:
    findings = _check(config, lambda c: _set_mlflow_host(c, "10.0.3.7"))
    assert _errors(findings) == []
    assert any("fixed private IP" in f.message for f in findings if f.level == "warning")


def test_head_without_mlflow_server_or_dhkd_install_fails(config: dict[str, Any]) -> None:
    def change(c: dict[str, Any]) -> None:
        c["head_start_ray_commands"] = [
            x for x in c["head_start_ray_commands"] if "mlflow" not in x
        ]
        c["setup_commands"] = [x for x in c["setup_commands"] if "dhkd" not in x]

    errors = _errors(_check(config, change))
    assert any("no MLflow tracking server" in f.message for f in errors)
    assert sum("installs dhkd" in f.message for f in errors) == 2  # head and gpu_worker


def test_secrets_are_reported_by_path_never_printed(config: dict[str, Any], tmp_path: Path) -> None:
    broken = copy.deepcopy(config)
    broken["provider"]["aws_credentials"] = {"aws_secret_access_key": "s3cr3t-value"}
    broken["head_setup_commands"].append("echo postgresql://bob:hunter2@db/x")
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(broken))
    report = check_cluster(path)
    text = report.render()
    assert report.exit_code == 2
    assert "provider.aws_credentials" in text and "head_setup_commands[4]" in text
    assert "s3cr3t-value" not in text and "hunter2" not in text
    assert "secrets: none found" not in text
    assert mask("ray said: s3cr3t-value", report.secrets) == "ray said: ***"


def test_tracking_check_against_a_dead_port_fails_clearly() -> None:
    port = _free_port()
    (finding,) = tracking_findings(f"http://user:pw@127.0.0.1:{port}", timeout=2.0)
    assert finding.level == "error"
    assert f"127.0.0.1:{port}" in finding.message and "connection refused" in finding.message
    assert ":pw@" not in finding.render() and "mlflow server" in finding.fix


class _FakeMlflow(http.server.BaseHTTPRequestHandler):
    api_status = 200
    api_body = b'{"experiments": []}'

    def do_GET(self) -> None:
        status, body = (200, b"OK") if self.path == "/health" else (self.api_status, self.api_body)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_server() -> Iterator[Callable[[int, bytes], str]]:
    servers: list[http.server.HTTPServer] = []

    def start(api_status: int, api_body: bytes) -> str:
        handler = type("H", (_FakeMlflow,), {"api_status": api_status, "api_body": api_body})
        server = http.server.HTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_tracking_check_reads_health_and_the_api(fake_server: Callable[[int, bytes], str]) -> None:
    (ok,) = tracking_findings(fake_server(200, b"{}"))
    assert ok.level == "ok" and "tracking API (200)" in ok.message
    (host,) = tracking_findings(fake_server(403, b"Invalid Host header - possible DNS rebinding"))
    assert host.level == "error" and "--allowed-hosts" in host.fix
    (other,) = tracking_findings(fake_server(404, b"not here"))
    assert other.level == "error" and "not MLflow" in other.message


def test_tracking_check_sql_stores(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    sqlite3.connect(db).close()
    assert tracking_findings(f"sqlite:///{db}")[0].level == "ok"
    assert tracking_findings(f"sqlite:///{tmp_path}/missing/dir/m.db")[0].level == "error"
    dead = f"postgresql+psycopg2://u:pw@127.0.0.1:{_free_port()}/mlflow"
    (finding,) = tracking_findings(dead, timeout=2.0)
    assert finding.level == "error" and "cannot connect" in finding.message
    assert "pw@" not in finding.render()


def test_storage_path_checks(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "study"
    (ok,) = storage_findings(str(target))
    assert ok.level == "ok" and list(target.iterdir()) == []  # probe file removed
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    (bad,) = storage_findings(str(blocker / "sub"))
    assert bad.level == "error" and "cannot write" in bad.message
    assert storage_findings("relative/dir")[0].level == "error"
    (s3,) = storage_findings("s3://bucket/prefix")
    assert s3.level == "error" and "not a filesystem" in s3.message
    assert [f.level for f in storage_findings(str(target), multi_node=True)] == ["ok", "warning"]


def test_cli_exit_codes(
    config: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cluster", "check", str(CLUSTER_YAML)]) == 0
    assert "result: 0 errors" in capsys.readouterr().out
    assert main(["cluster", "check", str(CLUSTER_YAML), "--storage-path", "s3://b/p"]) == 2
    assert "storage-path: s3:// is not a filesystem" in capsys.readouterr().out
    broken = copy.deepcopy(config)
    broken["max_wrokers"] = broken.pop("max_workers")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(broken))
    assert main(["cluster", "check", str(bad)]) == 2
    assert "max_wrokers: unknown key" in capsys.readouterr().out
    port = _free_port()
    assert main(["cluster", "check", "--tracking-uri", f"http://127.0.0.1:{port}"]) == 2
    assert main(["cluster", "check", str(tmp_path / "absent.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "syntax.yaml").write_text("cluster_name: [unclosed\n")
    assert main(["cluster", "check", str(tmp_path / "syntax.yaml")]) == 2
    assert "line" in capsys.readouterr().err
