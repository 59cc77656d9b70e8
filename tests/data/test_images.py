"""Loading images and masks: colour order, grayscale, formats, resizing, errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dhkd.data.images import (
    load_image,
    load_mask,
    load_split,
    select_evenly,
    select_stratified,
)
from dhkd.data.index import index_category
from dhkd.errors import DataError


def _rgb_image(h: int = 40, w: int = 40) -> np.ndarray:
    """A smooth RGB test image, uint8 (h, w, 3), with distinct channels."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // w, yy * 255 // h, np.full((h, w), 200)], -1).astype(np.uint8)


def _save(path: Path, rgb_or_gray: np.ndarray) -> Path:
    img = rgb_or_gray
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), img)
    return path


def test_rgb_png_keeps_channel_order(tmp_path: Path) -> None:
    rgb = _rgb_image()
    out = load_image(_save(tmp_path / "a.png", rgb), 40)
    assert out.dtype == np.uint8 and out.shape == (40, 40, 3)
    np.testing.assert_array_equal(out, rgb)


def test_grayscale_becomes_three_channels(tmp_path: Path) -> None:
    gray = _rgb_image()[..., 0]
    out = load_image(_save(tmp_path / "g.png", gray), 40)
    assert out.shape == (40, 40, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".bmp", ".JPG"])
def test_other_formats(tmp_path: Path, suffix: str) -> None:
    rgb = _rgb_image()
    out = load_image(_save(tmp_path / f"x{suffix}", rgb), 40)
    assert out.shape == (40, 40, 3)
    tol = 0 if suffix == ".bmp" else 12  # jpeg is lossy
    assert np.abs(out.astype(int) - rgb).max() <= tol


def test_alpha_and_16_bit(tmp_path: Path) -> None:
    rgba = np.concatenate([_rgb_image(), np.full((40, 40, 1), 128, np.uint8)], -1)
    np.testing.assert_array_equal(load_image(_save(tmp_path / "a.png", rgba), 40), rgba[..., :3])
    deep = _rgb_image().astype(np.uint16) * 257
    np.testing.assert_array_equal(load_image(_save(tmp_path / "d.png", deep), 40), _rgb_image())


def test_resize_interpolation(tmp_path: Path) -> None:
    rgb = _rgb_image(40, 40)
    path = _save(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(
        load_image(path, 16), cv2.resize(rgb, (16, 16), interpolation=cv2.INTER_AREA)
    )
    np.testing.assert_array_equal(
        load_image(path, 64), cv2.resize(rgb, (64, 64), interpolation=cv2.INTER_LINEAR)
    )
    wide = load_image(_save(tmp_path / "w.png", _rgb_image(30, 50)), 32)
    assert wide.shape == (32, 32, 3)


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"cannot decode image .*bad\.png"):
        load_image(bad, 8)
    with pytest.raises(DataError, match=r"cannot read image .*missing\.png"):
        load_image(tmp_path / "missing.png", 8)
    with pytest.raises(DataError, match="cannot decode"):
        load_mask(bad, 8)


def test_mask_binarised_and_nearest(tmp_path: Path) -> None:
    mask = np.array([[0, 255], [7, 0]], dtype=np.uint8)
    out = load_mask(_save(tmp_path / "m.png", mask), 4)
    expected = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]], np.uint8)
    np.testing.assert_array_equal(out, expected)
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[1, 2] = (0, 164, 54)
    out = load_mask(_save(tmp_path / "c.png", colour), 4)
    assert out.sum() == 1 and out[1, 2] == 1
    np.testing.assert_array_equal(load_mask(None, 5), np.zeros((5, 5), np.uint8))


def test_mask_shrink_is_nearest(tmp_path: Path) -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[10:30, 20:50] = 255
    out = load_mask(_save(tmp_path / "m.png", mask), 16)
    np.testing.assert_array_equal(
        out, cv2.resize(mask, (16, 16), interpolation=cv2.INTER_NEAREST) // 255
    )
    assert set(np.unique(out)) == {0, 1}


def test_load_split(synthetic_root: Path) -> None:
    idx = index_category(synthetic_root, "stripes")
    train = load_split(idx, "train", 32)
    assert train.images.shape == (12, 32, 32, 3) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int64 and not train.labels.any() and not train.masks.any()
    test = load_split(idx, "test", 48)
    assert test.masks.shape == (10, 48, 48) and test.masks.dtype == np.uint8
    assert list(test.labels) == [int(d != "good") for d in test.defects]
    per_image = test.masks.reshape(10, -1).sum(1)
    assert (per_image[test.labels == 1] > 0).all() and (per_image[test.labels == 0] == 0).all()
    assert set(np.unique(test.masks)) == {0, 1}
    assert len(test) == 10 and test.paths[0].endswith(".png")


def test_load_split_cap_keeps_every_defect_type(synthetic_root: Path) -> None:
    idx = index_category(synthetic_root, "widget")
    capped = load_split(idx, "test", 16, max_images=4)
    assert len(capped) == 4
    assert set(capped.defects) == {"good", "missing", "scratch", "stain"}
    assert select_evenly(10, 3) == [0, 4, 9] and select_evenly(3, 5) == [0, 1, 2]
    groups = ["good"] * 20 + ["a"] * 3 + ["b"] * 1
    assert select_stratified(groups, 4) == [0, 19, 20, 23]
    assert select_stratified(groups, 8) == [0, 4, 8, 11, 15, 19, 20, 23]
    assert select_stratified(groups, 2) == [0, 23]
    with pytest.raises(DataError, match="split must be"):
        load_split(idx, "val", 16)  # type: ignore[arg-type]
