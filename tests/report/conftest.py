"""Fixtures of the report tests: an MLflow store holding a hand-made study (built once per
session through the platform's Tracker). Fresh empty stores: tests/conftest.py's
`tracking_uri`."""

from __future__ import annotations

import shutil

import pytest

from .report_helpers import default_trials, write_study


@pytest.fixture(scope="session")
def fake_study(tmp_path_factory, mlflow_template):
    """(uri, name, trials) of a finished noise-level ablation: 4 categories x 2 seeds, trials
    see report_helpers.default_trials. Treat as read-only (report with log_artifacts=False)."""
    tmp = tmp_path_factory.mktemp("fake-study")
    shutil.copy(mlflow_template, tmp / "mlflow.db")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    trials = default_trials()
    name = write_study(tmp, uri, trials)
    return uri, name, {t.number: t for t in trials}
