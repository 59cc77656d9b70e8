"""Shared pytest fixtures."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT / ".." / "shared" / "data"

# The session dataset of `synthetic_root`: one texture and one object category.
SYNTHETIC_CATEGORIES = ("stripes", "widget")
SYNTHETIC_SIZE = 64
SYNTHETIC_COUNTS = {"n_train": 12, "n_test_good": 4, "n_test_defect": 6}


@pytest.fixture(scope="session", autouse=True)
def _feature_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the default feature cache of every test run out of the user's ~/.cache."""
    os.environ["DHKD_FEATURE_CACHE"] = str(tmp_path_factory.mktemp("feature_cache"))


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Each test starts with the process's torch CPU thread count: run_trial sets its context's
    count (1 by default) and test_learning sets 1, and without this every later in-process
    training (the real-data cookie runs among them) ran on one thread of two."""
    import torch

    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic MVTec-layout dataset, written once per session; treat it as read-only.

    Categories "stripes" (textured) and "widget" (object), 64x64 PNG, 12 train/good,
    4 test/good and 6 defective test images (2 each of scratch, stain, missing) per category.
    Copy it (shutil.copytree) before changing anything.
    """
    from dhkd.data.synth import make_synthetic_dataset

    out = tmp_path_factory.mktemp("synthetic") / "data"
    return make_synthetic_dataset(
        out, SYNTHETIC_CATEGORIES, image_size=SYNTHETIC_SIZE, seed=0, **SYNTHETIC_COUNTS
    )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder ../shared/data (mvtec_ad/, lookout_cookie/); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA.resolve()}")
    return SHARED_DATA.resolve()


@pytest.fixture(scope="session")
def cookie_root(shared_data: Path) -> Path:
    """The real cookie category's data root (../shared/data/lookout_cookie); skips when absent."""
    root = shared_data / "lookout_cookie"
    if not (root / "cookie").is_dir():
        pytest.skip(f"cookie not found under {root}")
    return root


def _train_on_cookie(root: Path, method: str, out: Path) -> Path:
    """`dhkd train --data ROOT --category cookie --method METHOD --out OUT --quiet`: the
    method's defaults (quick preset), nothing overridden; returns OUT."""
    from dhkd.cli import main

    args = ["train", "--data", str(root), "--category", "cookie", "--method", method]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def cookie_dhkd_run(cookie_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of `dhkd train` with DHKD's defaults on the real cookie category (about a
    minute on 2 cores), trained once per session for the accuracy, predict and export tests.
    Treat as read-only."""
    return _train_on_cookie(cookie_root, "dhkd", tmp_path_factory.mktemp("cookie-dhkd"))


class SmokeStudy(NamedTuple):
    """A finished quickstart smoke study: its MLflow store (`uri`, sqlite under `tmp`, artifacts
    in tmp/mlflow-artifacts), Ray storage path, study name and the driver's stdout."""

    uri: str
    storage: Path
    name: str
    tmp: Path
    stdout: str

    def copy(self, dest: Path) -> SmokeStudy:
        """The same study in `dest` (a folder that does not exist yet), for a test that writes
        into it: the sqlite store, its artifacts and the Ray storage, with every absolute path
        of the original (artifact locations, data root tags, the study's JSON state) moved."""
        shutil.copytree(self.tmp, dest, symlinks=True)
        old, new = str(self.tmp), str(dest)
        with sqlite3.connect(dest / "mlflow.db") as db:
            for table, column in (
                ("experiments", "artifact_location"),
                ("runs", "artifact_uri"),
                ("tags", "value"),
                ("params", "value"),
            ):
                db.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)", (old, new))
        db.close()
        for path in (dest / "ray").rglob("*.json"):
            try:
                text = path.read_text()
            except UnicodeDecodeError:  # Ray pickles some of its state under a .json name
                continue
            if old in text:
                path.write_text(text.replace(old, new))
        return self._replace(uri=f"sqlite:///{dest / 'mlflow.db'}", storage=dest / "ray", tmp=dest)


@pytest.fixture(scope="session")
def quickstart_smoke(tmp_path_factory: pytest.TempPathFactory) -> SmokeStudy:
    """The README's quickstart study as a smoke test (`dhkd study run studies/quickstart.yaml
    --smoke-test`, study "qs"), run once per session (about 30 s on 2 cores) for every test that
    needs one. Read-only: a test that writes into the store (a logged report, a tag) works on
    `quickstart_smoke.copy(tmp_path / "qs")` instead, so the tests stay order-independent."""
    tmp = tmp_path_factory.mktemp("quickstart-smoke")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "dhkd", "study", "run", str(REPO_ROOT / "studies/quickstart.yaml"),
           "--smoke-test", "--tracking-uri", uri, "--storage-path", str(tmp / "ray"),
           "--name", "qs"]  # fmt: skip
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=500, cwd=tmp)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return SmokeStudy(uri, tmp / "ray", "qs", tmp, done.stdout)


@pytest.fixture(scope="session")
def quickstart_report(quickstart_smoke: SmokeStudy, tmp_path_factory: pytest.TempPathFactory):
    """(study, report folder): a copy of the quickstart smoke study after `dhkd report qs`, which
    logged the report into the study run (what `dhkd ui` shows). Treat as read-only."""
    from dhkd.cli import main

    study = quickstart_smoke.copy(tmp_path_factory.mktemp("quickstart-report") / "qs")
    out = study.tmp.parent / "report"
    args = ["report", study.name, "--tracking-uri", study.uri, "--out", str(out),
            "--storage-path", str(study.storage)]  # fmt: skip
    assert main(args) == 0
    return study, out


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty MLflow sqlite file, made once per session (that takes seconds): copy it
    (shutil.copy) for a fresh tracking store; never write to it."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_uri(tmp_path: Path, mlflow_template: Path) -> str:
    """The URI of a fresh, empty MLflow sqlite store of this test's own (tmp_path/mlflow.db)."""
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance (2 CPUs) for every test that drives Ray in this process, started
    once per session (each start costs seconds): a study run in-process finds it up, uses it and
    leaves it running. A test whose driver must start its own Ray runs `dhkd study run` in a
    subprocess, which never joins this instance."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
