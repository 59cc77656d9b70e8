"""The MLflow tracking store: the URI every command defaults to, and a client for a URI.

Studies log to it (dhkd.study.tracking); predict, reproduce, rescore and the report read from
it. A local sqlite store is a relative path by default, made absolute by `normalize_uri` so that
Ray workers, the UI and `dhkd study sync` open the same file.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

from dhkd.errors import DhkdError
from dhkd.runs.paths import existing_ancestor, writable_folder

DEFAULT_TRACKING_URI = "sqlite:///runs/mlflow.db"


SQLITE_HEADER = b"SQLite format 3\x00"
PROBE_TIMEOUT_S = "5"  # seconds a tracking server has to answer the probe (no retries)
REQUEST_TIMEOUT_S = "10"  # and each later request, retried twice (unless set in the env)


def normalize_uri(uri: str) -> str:
    """Make sqlite paths absolute (workers, the UI and `study sync` then agree); a store the
    study will write must be a sqlite database, or creatable: its folder is made."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///")).expanduser().resolve()
        check_sqlite(path, create=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    return uri


def check_sqlite(path: Path, create: bool) -> None:
    """A one-line DhkdError for a sqlite store MLflow cannot use (it would retry for minutes or
    print a traceback): a file that is not a sqlite database, a folder, or (`create`: a store
    that will be written) a file or folder without write permission."""
    if path.is_dir():
        raise DhkdError(f"the tracking store {path} is a folder; pass the .db file inside it")
    if path.is_file():
        with path.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
        if head and head != SQLITE_HEADER:
            raise DhkdError(
                f"{path} is not an MLflow sqlite database; pass --tracking-uri sqlite:///FILE.db "
                "of the store the study used, or of a new file"
            )
    if not create:
        return
    folder = existing_ancestor(path.parent)
    if not writable_folder(folder) or (path.exists() and not os.access(path, os.W_OK)):
        raise DhkdError(
            f"the tracking store {path} cannot be written ({folder} is not writable); pass "
            "--tracking-uri sqlite:///PATH/mlflow.db in a writable folder"
        )


def probe(client) -> Exception | None:
    try:
        client.search_experiments(max_results=1)
        return None
    except Exception as exc:
        return exc


def check_tracking(uri: str) -> None:
    """Raise a clear DhkdError unless the tracking URI answers within a few seconds (before
    any trial runs, and before a read-only command asks a server anything)."""
    from mlflow.tracking import MlflowClient

    probe_env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": PROBE_TIMEOUT_S}  # fmt: skip
    saved = {key: os.environ.get(key) for key in probe_env}
    os.environ.update(probe_env)
    try:
        exc = probe(MlflowClient(uri))
    finally:
        for key, value in saved.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value
    if exc is not None:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise DhkdError(
            f"the tracking URI {uri} does not answer ({first}). Start the server "
            "(e.g. `mlflow server --host 127.0.0.1 --port 5000`) or pass a local store, "
            "e.g. --tracking-uri sqlite:///runs/mlflow.db"
        )


def client_for(uri: str):
    """(MlflowClient, normalised uri) of a store that is only read: a sqlite file that does not
    exist is an error (MLflow would silently create an empty database), a server must answer
    within a few seconds."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///")).expanduser()
        if not path.is_file():
            raise DhkdError(
                f"no such tracking store: no MLflow database at {path.resolve()}; run a study "
                "first (`dhkd study run studies/quickstart.yaml`) or pass --tracking-uri of the "
                "store it used"
            )
        check_sqlite(path.resolve(), create=False)
        uri = f"sqlite:///{path.resolve()}"
    elif uri.startswith(("http://", "https://")):
        check_tracking(uri)  # a clear DhkdError instead of retries and a traceback
    return _client(uri), uri


@functools.cache
def _client(uri: str):
    from mlflow.tracking import MlflowClient

    logging.getLogger("alembic").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", REQUEST_TIMEOUT_S)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    return MlflowClient(uri)
