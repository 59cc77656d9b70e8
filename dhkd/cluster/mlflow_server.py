"""Find the `mlflow server` command in the head's start commands and check how it is bound.

Commands are shell text. They are split with shlex (quotes and operators honoured); a quoted
argument that itself contains `mlflow server` (e.g. `bash -c '... mlflow server ...'`) is split
again, so wrappers such as setsid/nohup/bash -c are seen through.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass, field

from dhkd.cluster.findings import Finding

_WILDCARDS = {"0.0.0.0", "::", "[::]", "*", "", "0"}
_LOOPBACK_NAMES = {"localhost", "ip6-localhost"}
_VAR = re.compile(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$")
_FLAGS = {
    "-h": "host",
    "--host": "host",
    "-p": "port",
    "--port": "port",
    "--backend-store-uri": "backend",
    "--artifacts-destination": "artifacts",
    "--default-artifact-root": "artifact_root",
}
BIND_FIX = (
    "bind to the head's private IP: HEAD_PRIVATE_IP=$(hostname -I | awk '{print $1}'); "
    'mlflow server ... --host "$HEAD_PRIVATE_IP" --port 5000'
)


@dataclass
class MlflowServer:
    """The options of one `mlflow server` invocation (None: option not given)."""

    command_index: int
    host: str | None = None
    port: str | None = None
    backend: str | None = None
    artifacts: str | None = None
    artifact_root: str | None = None
    serve_artifacts: bool = True
    extra: list[str] = field(default_factory=list)


def _split(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:  # unbalanced quotes: fall back to plain whitespace
        return text.split()


def _parse_args(index: int, args: list[str]) -> MlflowServer:
    server = MlflowServer(command_index=index)
    i = 0
    while i < len(args):
        tok = args[i]
        if tok and tok[0] in ";&|<>()":  # end of this command
            break
        name, _, inline = tok.partition("=")
        if name in _FLAGS:
            value = inline if inline else (args[i + 1] if i + 1 < len(args) else "")
            setattr(server, _FLAGS[name], value)
            i += 1 if inline else 2
            continue
        if tok == "--no-serve-artifacts":
            server.serve_artifacts = False
        elif tok == "--serve-artifacts":
            server.serve_artifacts = True
        else:
            server.extra.append(tok)
        i += 1
    return server


def find_mlflow_server(commands: list[str]) -> MlflowServer | None:
    """The first `mlflow server` invocation in `commands`, or None."""
    for index, command in enumerate(commands):
        found = _find_in_text(index, command, depth=0)
        if found is not None:
            return found
    return None


def _find_in_text(index: int, text: str, depth: int) -> MlflowServer | None:
    if "mlflow" not in text or depth > 3:
        return None
    tokens = _split(text)
    for i, tok in enumerate(tokens[:-1]):
        if tok.endswith("mlflow") and tokens[i + 1] == "server":
            return _parse_args(index, tokens[i + 2 :])
    for tok in tokens:
        if "mlflow" in tok and "server" in tok and tok != text:
            found = _find_in_text(index, tok, depth + 1)
            if found is not None:
                return found
    return None


def _assigned_value(name: str, commands: list[str]) -> str | None:
    pattern = re.compile(rf"(?:^|[\s;&|(])(?:export\s+)?{re.escape(name)}=(\S*)")
    for command in commands:
        match = pattern.search(command)
        if match:
            return match.group(1).strip("\"'")
    return None


def host_findings(server: MlflowServer, commands: list[str], where: str) -> list[Finding]:
    """Is the server reachable by the workers, and by nobody outside the cluster network?"""
    host = server.host
    if host is None:
        msg = "mlflow server has no --host: it binds 127.0.0.1 and the workers cannot reach it"
        return [Finding("error", where, msg, BIND_FIX)]
    var = _VAR.match(host)
    if var:
        value = _assigned_value(var.group(1), commands)
        if value is None:
            msg = f"--host {host}: ${var.group(1)} is never set in head_start_ray_commands"
            return [Finding("warning", where, msg, BIND_FIX)]
        if value.startswith("$("):
            msg = f"mlflow server binds {host}, set at start by $(...) (not a wildcard)"
            return [Finding("ok", where, msg)]
        host = value
    return _literal_host_findings(host, where)


def _literal_host_findings(host: str, where: str) -> list[Finding]:
    bare = host.strip("[]")
    if host in _WILDCARDS or bare in _WILDCARDS:
        msg = (
            f"mlflow server binds the wildcard address {host!r}: it listens on every interface "
            "and MLflow has no login"
        )
        return [Finding("error", where, msg, BIND_FIX)]
    if bare.lower() in _LOOPBACK_NAMES:
        msg = f"mlflow server binds {host}: only the head itself can reach it, not the workers"
        return [Finding("error", where, msg, BIND_FIX)]
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        msg = f"mlflow server binds the host name {host!r}; make sure it resolves to a private IP"
        return [Finding("warning", where, msg, BIND_FIX)]
    if ip.is_loopback:
        msg = f"mlflow server binds {host}: only the head itself can reach it, not the workers"
        return [Finding("error", where, msg, BIND_FIX)]
    if not ip.is_private:
        msg = f"mlflow server binds the public address {host}; it must never face the internet"
        return [Finding("error", where, msg, BIND_FIX)]
    msg = f"mlflow server binds the fixed private IP {host}; a new head gets a different one"
    return [Finding("warning", where, msg, BIND_FIX)]


def store_findings(server: MlflowServer, where: str) -> list[Finding]:
    """Backend store, artifact store and port of the server."""
    out: list[Finding] = []
    backend = server.backend or ""
    if not backend:
        fix = "add --backend-store-uri postgresql://... (PostgreSQL on the head)"
        msg = "no --backend-store-uri: MLflow would use sqlite in whatever directory it starts in"
        out.append(Finding("error", where, msg, fix))
    elif re.match(r"^[a-z+]+://[^/@\s:]*:[^/@\s]*@", backend):
        msg = "the --backend-store-uri carries a password; it must not be written in cluster.yaml"
        fix = "use peer authentication over the Unix socket, or ~/.pgpass on the head"
        out.append(Finding("error", where, msg, fix))
    elif backend.split("://")[0].split("+")[0] in ("postgresql", "mysql", "mssql") and (
        problem := _driver_problem(backend)
    ):
        fix = (
            "name an installed driver: postgresql+psycopg2://... (psycopg2-binary comes with dhkd)"
        )
        out.append(Finding("error", where, f"--backend-store-uri: {problem}", fix))
    elif backend.startswith("sqlite"):
        msg = "sqlite backend: one file, one writer; concurrent trials wait on its lock"
        fix = "use PostgreSQL: --backend-store-uri postgresql://..."
        out.append(Finding("warning", where, msg, fix))
    artifacts = server.artifacts or server.artifact_root or ""
    if not artifacts or "://" not in artifacts:
        msg = "artifacts are kept on the head's own disk and are lost at `ray down`"
        fix = "add --artifacts-destination s3://<bucket>/<prefix> --serve-artifacts"
        out.append(Finding("warning", where, msg, fix))
    elif "change-me" in artifacts.lower() or "your-bucket" in artifacts.lower():
        msg = f"--artifacts-destination {artifacts} is a placeholder"
        fix = "put a bucket you own there before `ray up` (docs/cluster.md, One-time AWS setup)"
        out.append(Finding("warning", where, msg, fix))
    if not server.serve_artifacts:
        msg = "--no-serve-artifacts: every trial then needs direct write access to the store"
        out.append(Finding("warning", where, msg, "use --serve-artifacts"))
    port = server.port or "5000"
    if not port.isdigit() or not 0 < int(port) < 65536:
        out.append(Finding("error", where, f"--port {port!r} is not a TCP port", "use e.g. 5000"))
    if not any(f.level != "ok" for f in out):
        out.append(
            Finding("ok", where, f"mlflow server: backend {backend.split(':')[0]}, port {port}")
        )
    return out


def _driver_problem(backend: str) -> str | None:
    """Would MLflow's SQLAlchemy find a driver for this URI? Shell variables become `x`."""
    from dhkd.cluster.endpoints import sql_driver_problem

    return sql_driver_problem(re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", "x", backend))
