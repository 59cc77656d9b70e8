"""Fixtures for the study tests: one local Ray instance, a migrated MLflow sqlite store to copy
(creating one costs ~8 s), and fake trainings whose pruning / failure behaviour is exact."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ray_local():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def tracking_uri(tmp_path, mlflow_template) -> str:
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def fake_root(tmp_path) -> Path:
    root = tmp_path / "data"
    for cat in ("a", "b"):
        (root / cat).mkdir(parents=True)
    return root
