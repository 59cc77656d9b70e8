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

DEFAULT_TRACKING_URI = "sqlite:///runs/mlflow.db"


def normalize_uri(uri: str) -> str:
    """Make sqlite paths absolute (workers, the UI and `study sync` then agree)."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = Path(uri.removeprefix("sqlite:///")).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if uri.startswith("sqlite:////"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return uri


def probe(client) -> Exception | None:
    try:
        client.search_experiments(max_results=1)
        return None
    except Exception as exc:
        return exc


def check_tracking(uri: str) -> None:
    """Raise a clear DhkdError unless the tracking URI answers (before any trial runs)."""
    from mlflow.tracking import MlflowClient

    saved = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        exc = probe(MlflowClient(uri))
    finally:
        if saved is None:
            del os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
        else:
            os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = saved
    if exc is not None:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise DhkdError(
            f"the tracking URI {uri} does not answer ({first}). Start the server "
            "(e.g. `mlflow server --host 127.0.0.1 --port 5000`) or pass a local store, "
            "e.g. --tracking-uri sqlite:///runs/mlflow.db"
        )


def client_for(uri: str):
    """(MlflowClient, normalised uri); a sqlite file that does not exist is an error (MLflow
    would silently create an empty database)."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///")).expanduser()
        if not path.is_file():
            raise DhkdError(
                f"no MLflow database at {path.resolve()}: run a study first (`dhkd study run "
                "studies/quickstart.yaml`) or pass --tracking-uri of the store it used"
            )
        uri = f"sqlite:///{path.resolve()}"
    elif uri.startswith(("http://", "https://")):
        check_tracking(uri)  # a clear DhkdError instead of retries and a traceback
    return _client(uri), uri


@functools.cache
def _client(uri: str):
    from mlflow.tracking import MlflowClient

    logging.getLogger("alembic").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return MlflowClient(uri)
