"""Synthetic datasets: layout, exact masks, determinism, learnability, command."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dhkd.cli import main
from dhkd.data.check import check_dataset
from dhkd.data.images import load_split, read_raw
from dhkd.data.index import index_category
from dhkd.data.synth import (
    DEFECT_TYPES,
    category_kind,
    make_style,
    make_synthetic_dataset,
    render_sample,
)
from dhkd.errors import DataError

SMALL = {"image_size": 32, "n_train": 3, "n_test_good": 2, "n_test_defect": 3}


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_category_kind() -> None:
    assert category_kind("stripes") == "textured" and category_kind("carpet") == "textured"
    assert category_kind("widget") == "object" and category_kind("bottle") == "object"
    assert category_kind("qwxz") in ("textured", "object")
    assert category_kind("qwxz") == category_kind("qwxz")


def test_layout_and_files(synthetic_root: Path) -> None:
    report = check_dataset(synthetic_root)
    assert report.problems == []
    for cat in ("stripes", "widget"):
        meta = json.loads((synthetic_root / cat / "synthetic.json").read_text())
        assert meta["style"]["kind"] == category_kind(cat) and meta["image_size"] == 64
        for path in (synthetic_root / cat).rglob("*.png"):
            raw = read_raw(path)
            assert raw.shape[:2] == (64, 64) and raw.dtype == np.uint8
            if "ground_truth" in path.parts:
                assert raw.ndim == 2 and set(np.unique(raw)) == {0, 255}
            else:
                assert raw.ndim == 3


@pytest.mark.parametrize("name", ["stripes", "widget", "gridded", "bottle", "thing"])
@pytest.mark.parametrize("defect", DEFECT_TYPES)
def test_masks_are_exactly_the_changed_pixels(name: str, defect: str) -> None:
    style = make_style(name, seed=3)
    for i in range(3):
        normal, image, mask = render_sample(style, np.random.default_rng(i), 64, defect)
        changed = (image != normal).any(-1)
        np.testing.assert_array_equal(mask.astype(bool), changed)
        assert mask.sum() >= 0.003 * 64 * 64  # visible, not a few pixels
        contrast = np.abs(image.astype(int) - normal)[mask > 0].max(-1).mean()
        assert contrast > 40, f"{defect} on {name} too faint: {contrast:.1f}"
    normal, image, mask = render_sample(style, np.random.default_rng(0), 64, None)
    np.testing.assert_array_equal(normal, image)
    assert not mask.any()
    with pytest.raises(DataError, match="unknown synthetic defect"):
        render_sample(style, np.random.default_rng(0), 64, "dent")


@pytest.mark.parametrize("name", ["stripes", "widget"])
def test_difficulty_makes_defects_fainter_and_good_images_vary_more(name: str) -> None:
    style = make_style(name, seed=3)

    def sample(i: int, difficulty: float, defect: str | None = "stain"):
        rng, variation = np.random.default_rng(i), np.random.default_rng(100 + i)
        return render_sample(style, rng, 64, defect, difficulty, variation)

    for i in range(3):
        easy_normal, easy, easy_mask = sample(i, 0.0)
        normal, image, mask = sample(i, 0.8)
        np.testing.assert_array_equal(mask.astype(bool), (image != normal).any(-1))
        hard = np.abs(image.astype(int) - normal)[mask > 0].mean()
        plain = np.abs(easy.astype(int) - easy_normal)[easy_mask > 0].mean()
        assert 0 < hard < 0.6 * plain
    goods = [sample(i, d, None)[0].astype(float) for d in (0.0, 0.8) for i in range(6)]
    spread = [np.std([g.mean() for g in goods[k : k + 6]]) for k in (0, 6)]
    assert spread[1] > 1.5 * spread[0]
    with pytest.raises(DataError, match="difficulty must be in"):
        sample(0, 1.5)


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = make_synthetic_dataset(tmp_path / "a", ["stripes", "widget"], seed=5, **SMALL)
    b = make_synthetic_dataset(tmp_path / "b", ["stripes", "widget"], seed=5, **SMALL)
    c = make_synthetic_dataset(tmp_path / "c", ["stripes", "widget"], seed=6, **SMALL)
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert da == db and len(da) == 2 * (3 + 2 + 3 + 3 + 1)
    assert da.keys() == dc.keys()
    png = [k for k in da if k.endswith(".png")]
    assert all(da[k] != dc[k] for k in png if "/train/" in k)


def test_refuses_bad_arguments_and_overwrite(tmp_path: Path) -> None:
    make_synthetic_dataset(tmp_path, ["stripes"], **SMALL)
    with pytest.raises(DataError, match="already exists and is not empty"):
        make_synthetic_dataset(tmp_path, ["stripes"], **SMALL)
    for kwargs, msg in [
        ({"categories": "ab"}, "non-empty list"),
        ({"categories": ["a/b"]}, "not a valid folder name"),
        ({"categories": ["x", "x"]}, "distinct"),
        ({"categories": ["x"], "image_size": 8}, "image_size"),
        ({"categories": ["x"], "seed": -1}, "seed"),
        ({"categories": ["x"], "n_train": 0}, "n_train >= 1"),
        ({"categories": ["x"], "n_test_good": 0, "n_test_defect": 0}, "at least one test"),
    ]:
        with pytest.raises(DataError, match=msg):
            make_synthetic_dataset(tmp_path / "new", **kwargs)


def _patch_knn_auroc(root: Path, category: str) -> float:
    """Image AUROC of a nearest-neighbour detector on raw 6x6 colour patches.

    The memory bank holds train patches at stride 2, the test images are scanned at stride 4.
    """
    idx = index_category(root, category)
    train, test = load_split(idx, "train", 64), load_split(idx, "test", 64)

    def patches(x: np.ndarray, stride: int) -> np.ndarray:  # (N, 64, 64, 3) -> (N, P, 108)
        win = np.lib.stride_tricks.sliding_window_view(x / 255.0, (6, 6), axis=(1, 2))
        win = win[:, ::stride, ::stride]
        return win.reshape(len(x), -1, 108).astype(np.float32)

    bank, query = patches(train.images, 2).reshape(-1, 108), patches(test.images, 4)
    scores = []
    for q in query:
        d2 = (q**2).sum(1)[:, None] + (bank**2).sum(1)[None] - 2 * q @ bank.T
        scores.append(np.sqrt(max(d2.min(1).max(), 0.0)))
    return float(roc_auc_score(test.labels, scores))


@pytest.mark.parametrize("category", ["stripes", "widget"])
def test_learnable_by_a_feature_distance_detector(synthetic_root: Path, category: str) -> None:
    assert _patch_knn_auroc(synthetic_root, category) >= 0.9


def test_cli_synth(tmp_path: Path, capsys) -> None:
    out = tmp_path / "syn"
    args = ["synth", str(out), "--categories", "grain,gizmo", "--image-size", "32"]
    args += ["--seed", "1", "--n-train", "2", "--n-test-good", "1", "--n-test-defect", "4"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert f"wrote a synthetic dataset to {out}" in text
    assert "grain     test   scratch       2      2" in text
    assert sorted(p.name for p in out.iterdir()) == ["gizmo", "grain"]
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
