"""Reachability checks: does the MLflow tracking store answer, is the storage path writable?

These are the only checks that touch anything outside the config file, and only when the user
passes --tracking-uri / --storage-path. URIs are printed with their passwords masked.
"""

from __future__ import annotations

import base64
import errno
import os
import socket
import sqlite3
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

from dhkd.cluster.findings import Finding, redact, redact_uri

_HEALTH = "/health"
_API = "/api/2.0/mlflow/experiments/search?max_results=1"
_TRACKING_FIX = (
    "start the server (on the cluster the head starts it; see ~/mlflow-server.log there; "
    "locally: mlflow server --host 127.0.0.1 --port <port>) or fix --tracking-uri"
)


def tracking_findings(uri: str, timeout: float = 3.0, multi_node: bool = False) -> list[Finding]:
    """Check that the tracking store behind `uri` answers (http(s), sqlite, postgresql, mysql)."""
    scheme = urlsplit(uri).scheme.lower()
    if scheme in ("http", "https"):
        return [_http_finding(uri, timeout)]
    out: list[Finding] = []
    if multi_node and scheme in ("", "file", "sqlite"):
        msg = "a store on this machine's disk is out of reach for trials on the worker nodes"
        fix = "use the head's server: --tracking-uri http://<head private IP>:5000"
        out.append(Finding("warning", "tracking-uri", msg, fix))
    if scheme == "sqlite":
        out.append(_sqlite_finding(uri))
    elif scheme.split("+")[0] in ("postgresql", "mysql", "mssql"):
        out.append(_sql_finding(uri, timeout))
    elif scheme in ("", "file"):
        msg = "a file store: MLflow 3.17 refuses it unless MLFLOW_ALLOW_FILE_STORE=true"
        fix = "use sqlite:///<abs path>.db locally, or the head's http:// server on a cluster"
        out.append(Finding("warning", "tracking-uri", msg, fix))
    else:
        msg = f"{scheme}:// tracking URIs cannot be checked here"
        out.append(Finding("warning", "tracking-uri", msg, "check it by hand"))
    return out


def _get(url: str, timeout: float) -> tuple[int, str]:
    """HTTP status and the start of the body; network failures raise URLError/OSError.
    A user:password in the URL is sent as HTTP basic auth (urllib cannot parse it)."""
    parts = urlsplit(url)
    request = urllib.request.Request(url)
    if "@" in parts.netloc:
        userinfo, host = parts.netloc.rsplit("@", 1)
        request = urllib.request.Request(parts._replace(netloc=host).geturl())
        token = base64.b64encode(unquote(userinfo).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(512).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(512).decode("utf-8", "replace")


def _http_finding(uri: str, timeout: float) -> Finding:
    """GET /health (is a server up?), then the tracking API the trials use: MLflow exempts
    /health from its Host-header guard, so only the API shows a rejected Host header."""
    shown, base = redact_uri(uri), uri.rstrip("/")
    start = time.monotonic()
    try:
        health, _ = _get(base + _HEALTH, timeout)
        status, body = _get(base + _API, timeout)
    except (urllib.error.URLError, OSError) as exc:
        msg = _network_message(shown, exc, timeout)
        return Finding("error", "tracking-uri", msg, _TRACKING_FIX)
    ms = (time.monotonic() - start) * 1000
    if status == 200:
        msg = f"{shown} answers GET /health ({health}) and the tracking API (200) in {ms:.0f} ms"
        return Finding("ok", "tracking-uri", msg)
    if status == 403 and "host header" in body.lower():
        host = urlsplit(uri).netloc.rsplit("@", 1)[-1]
        msg = f"{shown} rejects the Host header {host!r} (MLflow's DNS-rebinding guard)"
        fix = f"start mlflow server with --allowed-hosts '{host},localhost:*'"
        return Finding("error", "tracking-uri", msg, fix)
    if status in (401, 403):
        msg = f"{shown} answers but wants a login (HTTP {status})"
        fix = "set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD in the environment"
        return Finding("warning", "tracking-uri", msg, fix)
    msg = f"{shown} answers HTTP {health} to /health and {status} to the tracking API: not MLflow?"
    return Finding("error", "tracking-uri", msg, _TRACKING_FIX)


def _network_message(shown: str, exc: Exception, timeout: float) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ConnectionRefusedError):
        return f"nothing listens at {shown} (connection refused)"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"{shown} did not answer within {timeout:g} s"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host of {shown}"
    return f"cannot reach {shown}: {redact(str(reason))}"


def _sqlite_finding(uri: str) -> Finding:
    raw = uri.split(":///", 1)[1] if ":///" in uri else ""
    if raw in ("", ":memory:"):
        msg = "an in-memory sqlite store is lost when the process ends"
        return Finding("error", "tracking-uri", msg, "use sqlite:////absolute/path/mlflow.db")
    path = Path(raw.split("?", 1)[0])
    if path.exists():
        try:
            with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as conn:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            msg = f"cannot open {path} as sqlite: {exc}"
            return Finding("error", "tracking-uri", msg, "point it at an MLflow sqlite file")
        return Finding("ok", "tracking-uri", f"sqlite store {path} opens")
    parent = path.parent if str(path.parent) else Path(".")
    if parent.is_dir() and os.access(parent, os.W_OK):
        return Finding("ok", "tracking-uri", f"sqlite store {path} will be created by MLflow")
    msg = f"sqlite store {path}: directory {parent} is missing or not writable"
    return Finding("error", "tracking-uri", msg, "create the directory or choose another path")


def sql_driver_problem(uri: str) -> str | None:
    """Why SQLAlchemy (as MLflow uses it) cannot load the driver for `uri`, or None.

    SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, while dhkd installs psycopg2:
    such URIs must say postgresql+psycopg2://.
    """
    import sqlalchemy
    from sqlalchemy.engine import make_url

    try:
        dialect = make_url(uri).get_dialect()
        dialect.import_dbapi()
    except ImportError as exc:
        scheme = uri.split("://", 1)[0]
        return (
            f"SQLAlchemy {sqlalchemy.__version__} loads the driver module "
            f"'{exc.name or exc}' for {scheme}://, which is not installed"
        )
    except Exception as exc:  # ArgumentError, NoSuchModuleError: a malformed URI
        return f"not a usable database URI ({type(exc).__name__})"
    return None


def _sql_finding(uri: str, timeout: float) -> Finding:
    """Connect the way MLflow does (SQLAlchemy create_engine), run SELECT 1, disconnect."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    shown = redact_uri(uri)
    problem = sql_driver_problem(uri)
    if problem:
        fix = "write postgresql+psycopg2://... (psycopg2-binary comes with dhkd)"
        return Finding("error", "tracking-uri", f"{shown}: {problem}", fix)
    args = {"connect_timeout": max(1, round(timeout))}
    engine = create_engine(uri, poolclass=NullPool, connect_args=args)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else repr(cause)
        msg = f"cannot connect to {shown}: {redact(first)}"
        return Finding("error", "tracking-uri", msg, "check host, database, user and pg_hba.conf")
    finally:
        engine.dispose()
    return Finding("ok", "tracking-uri", f"{shown} accepts a connection (SELECT 1)")


def storage_findings(path: str, multi_node: bool = False) -> list[Finding]:
    """Check the study storage path: a directory every node shares (write probe here).

    The study keeps its Optuna database, tracking state and outbox beside Ray's files, so the
    path must be a filesystem; object-store URIs are refused as `dhkd study run` refuses them.
    """
    parts = urlsplit(path)
    if len(parts.scheme) > 1 and parts.scheme != "file":
        msg = (
            f"{parts.scheme}:// is not a filesystem; the study keeps sqlite state (Optuna, "
            "tracking, outbox) under the storage path"
        )
        fix = "mount a shared filesystem (EFS/NFS) at the same path on every node and pass it"
        return [Finding("error", "storage-path", msg, fix)]
    local = Path(parts.path if parts.scheme == "file" else path).expanduser()
    if not local.is_absolute():
        msg = f"{path!r} is relative; Ray Tune needs an absolute storage path"
        return [Finding("error", "storage-path", msg, f"use {local.absolute()}")]
    out: list[Finding] = []
    try:
        existed = local.is_dir()
        local.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=local, prefix=".dhkd-write-probe-") as probe:
            probe.write(b"probe")
            probe.flush()
    except OSError as exc:
        why = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
        msg = f"cannot write to {local}: {why}"
        fix = "choose a directory you can write to, or fix its permissions"
        return [Finding("error", "storage-path", msg, fix)]
    made = "" if existed else " (created it)"
    out.append(Finding("ok", "storage-path", f"{local} is writable{made}"))
    if multi_node:
        msg = "a local path exists on this machine only; trials on the workers cannot reach it"
        fix = "make sure it is a shared filesystem (EFS/NFS) mounted at this path on every node"
        out.append(Finding("warning", "storage-path", msg, fix))
    return out
