"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

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
