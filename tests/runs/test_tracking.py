"""The tracking store's default URI and client: one definition that every command uses, sqlite
paths made absolute, and clear errors for a store that is missing or does not answer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dhkd.errors import DhkdError
from dhkd.runs.tracking import DEFAULT_TRACKING_URI, check_tracking, client_for, normalize_uri

PACKAGE = Path(__file__).resolve().parents[2] / "dhkd"
DOWN = "http://127.0.0.1:9"  # nothing listens on the discard port


def test_the_default_tracking_uri_is_defined_once():
    """No other module of the package binds a name to the default URI's text."""
    owners = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            value = getattr(node, "value", None)
            binds = isinstance(node, (ast.Assign, ast.AnnAssign))
            if binds and isinstance(value, ast.Constant) and value.value == DEFAULT_TRACKING_URI:
                owners.append(path.relative_to(PACKAGE).as_posix())
    assert owners == ["runs/tracking.py"]


def test_sqlite_paths_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert normalize_uri(DEFAULT_TRACKING_URI) == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert (tmp_path / "runs").is_dir()
    assert normalize_uri("http://host:5000") == "http://host:5000"


def test_a_missing_sqlite_store_is_an_error_not_a_new_database(tmp_path):
    with pytest.raises(DhkdError, match="no MLflow database"):
        client_for(f"sqlite:///{tmp_path / 'nothing.db'}")
    assert not (tmp_path / "nothing.db").exists()


def test_unreachable_tracking_uri_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(DhkdError, match="does not answer"):
        check_tracking(DOWN)
