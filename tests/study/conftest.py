"""Fixtures for the study tests: a fake data root. Ray and fresh MLflow stores come from
tests/conftest.py (`ray_local`, `tracking_uri`), shared with the robustness tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def fake_root(tmp_path) -> Path:
    root = tmp_path / "data"
    for cat in ("a", "b"):
        (root / cat).mkdir(parents=True)
    return root
