"""Index of MVTec-layout datasets: layout rules and fix-it errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dhkd.data.index import (
    IMAGE_SUFFIXES,
    MVTEC_CATEGORIES,
    index_category,
    list_categories,
    natural_key,
)
from dhkd.errors import DataError


@pytest.fixture
def copy_root(synthetic_root: Path, tmp_path: Path) -> Path:
    """A private, editable copy of the session's synthetic dataset."""
    return Path(shutil.copytree(synthetic_root, tmp_path / "data"))


def test_constants() -> None:
    assert len(MVTEC_CATEGORIES) == 15 and len(set(MVTEC_CATEGORIES)) == 15
    assert {"bottle", "metal_nut", "zipper", "grid", "screw"} <= set(MVTEC_CATEGORIES)
    assert IMAGE_SUFFIXES == (".png", ".jpg", ".jpeg", ".bmp")


def test_list_categories_ignores_non_category_folders(copy_root: Path) -> None:
    (copy_root / "notes").mkdir()
    (copy_root / ".hidden" / "train").mkdir(parents=True)
    (copy_root / "readme.txt").write_text("x")
    assert list_categories(copy_root) == ["stripes", "widget"]


def test_index_synthetic(synthetic_root: Path) -> None:
    idx = index_category(synthetic_root, "widget")
    assert idx.category == "widget" and idx.path == synthetic_root / "widget"
    assert idx.counts() == {
        "train": {"good": 12},
        "test": {"good": 4, "missing": 2, "scratch": 2, "stain": 2},
    }
    assert idx.defect_types == ("missing", "scratch", "stain")
    assert all(s.label == 0 and s.defect == "good" and s.mask_path is None for s in idx.train)
    for s in idx.test:
        assert s.path.is_file()
        if s.defect == "good":
            assert s.label == 0 and s.mask_path is None
        else:
            assert s.label == 1
            assert s.mask_path == synthetic_root / "widget/ground_truth" / s.defect / (
                s.path.stem + "_mask.png"
            )


def test_suffixes_case_insensitive_and_natural_order(copy_root: Path) -> None:
    good = copy_root / "stripes" / "train" / "good"
    src = good / "000.png"
    shutil.copy(src, good / "img-10.PNG")
    shutil.copy(src, good / "img-2.Jpeg")
    shutil.copy(src, good / ".hidden.png")
    (good / "notes.txt").write_text("not an image")
    names = [s.path.name for s in index_category(copy_root, "stripes").train]
    assert names[-2:] == ["img-2.Jpeg", "img-10.PNG"]
    assert len(names) == 14
    assert sorted(["b10", "b9", "a"], key=natural_key) == ["a", "b9", "b10"]


def test_mask_fallback_name(copy_root: Path) -> None:
    gt = copy_root / "stripes" / "ground_truth" / "stain"
    (gt / "000_mask.png").rename(gt / "000.png")
    sample = next(s for s in index_category(copy_root, "stripes").test if s.defect == "stain")
    assert sample.mask_path == gt / "000.png"


def test_missing_root_and_category(tmp_path: Path, synthetic_root: Path) -> None:
    with pytest.raises(DataError, match=r"does not exist.*train/good"):
        index_category(tmp_path / "nope", "bottle")
    with pytest.raises(DataError, match=r"'bottle' not found.*found: stripes, widget"):
        index_category(synthetic_root, "bottle")


def test_missing_train_good(copy_root: Path) -> None:
    shutil.rmtree(copy_root / "stripes" / "train" / "good")
    with pytest.raises(DataError, match="train/good is missing or holds no image"):
        index_category(copy_root, "stripes")


def test_defective_image_without_mask(copy_root: Path) -> None:
    (copy_root / "widget" / "ground_truth" / "scratch" / "001_mask.png").unlink()
    with pytest.raises(DataError, match=r"1 defective test image\(s\).*scratch/001\.png"):
        index_category(copy_root, "widget")


def test_no_test_images(copy_root: Path) -> None:
    shutil.rmtree(copy_root / "widget" / "test")
    with pytest.raises(DataError, match="holds no image"):
        index_category(copy_root, "widget")


@pytest.mark.real_data
def test_index_real_bottle(shared_data: Path) -> None:
    root = shared_data / "mvtec_ad"
    if not (root / "bottle").is_dir():
        pytest.skip("mvtec_ad/bottle not in shared data")
    idx = index_category(root, "bottle")
    counts = idx.counts()
    assert counts["train"] == {"good": 209}
    assert counts["test"]["good"] == 20
    assert sum(s.label for s in idx.test) == 63
    assert idx.defect_types == ("broken_large", "broken_small", "contamination")
