"""Selection protocols: the splits, the synthetic defects, and that under `synthetic` no real
defective test image is read before the final evaluation of a run."""

from __future__ import annotations

import numpy as np
import pytest

from dhkd.config import load_config
from dhkd.data import images as images_module
from dhkd.data.defects import DEFECT_KINDS, add_defect, defective_twins
from dhkd.data.index import index_category
from dhkd.data.selection import (
    load_test,
    load_validation,
    plan_selection,
    protocol_label,
)
from dhkd.errors import ConfigError, DataError
from dhkd.features import FeatureCache
from dhkd.sections import SelectionConfig
from dhkd.training.fit import fit_units


def _paths(samples) -> set[str]:
    return {str(s.path) for s in samples}


def test_synthetic_holds_out_a_seeded_fraction_of_train_good(synthetic_root):
    index = index_category(synthetic_root, "stripes")
    plan = plan_selection(index, SelectionConfig(val_fraction=0.25, seed=3))
    assert len(plan.validation) == 3 and len(plan.train) == 9
    assert not _paths(plan.train) & _paths(plan.validation)
    assert _paths(plan.train) | _paths(plan.validation) == _paths(index.train)
    assert plan.test == index.test and not plan.validation_is_test
    again = plan_selection(index, SelectionConfig(val_fraction=0.25, seed=3))
    other = plan_selection(index, SelectionConfig(val_fraction=0.25, seed=4))
    assert again.validation == plan.validation and other.validation != plan.validation
    capped = plan_selection(index, SelectionConfig(val_fraction=0.25, seed=3), max_train_images=4)
    assert len(capped.train) == 4 and _paths(capped.train) <= _paths(plan.train)


def test_synthetic_validation_pairs_each_good_image_with_a_defective_twin(synthetic_root):
    plan = plan_selection(index_category(synthetic_root, "widget"), SelectionConfig())
    val = load_validation(plan, 64)
    n = len(plan.validation)
    assert list(val.labels) == [0] * n + [1] * n
    assert not val.masks[:n].any() and all(m.any() for m in val.masks[n:])
    changed = (val.images[:n] != val.images[n:]).any(axis=-1)
    np.testing.assert_array_equal(changed, val.masks[n:].astype(bool))  # masks are exact
    assert all(p.endswith("#synthetic") for p in val.paths[n:])


def test_test_fold_is_a_stratified_disjoint_split_of_test(synthetic_root):
    index = index_category(synthetic_root, "stripes")
    plan = plan_selection(index, SelectionConfig(protocol="test_fold", val_fraction=0.5))
    assert _paths(plan.train) == _paths(index.train)
    assert not _paths(plan.test) & _paths(plan.validation)
    assert _paths(plan.test) | _paths(plan.validation) == _paths(index.test)
    for defect in ("good", *index.defect_types):
        in_val = [s for s in plan.validation if s.defect == defect]
        in_test = [s for s in plan.test if s.defect == defect]
        assert len(in_val) >= 1 and len(in_test) >= 1, defect
    assert set(load_test(plan, 32).paths) == _paths(plan.test)


def test_test_protocol_validates_on_the_test_set_and_says_so(synthetic_root):
    index = index_category(synthetic_root, "stripes")
    plan = plan_selection(index, SelectionConfig(protocol="test"))
    assert plan.validation_is_test and plan.validation == index.test
    assert protocol_label("test") == "selected on the test set (optimistic)"


def test_too_few_images_for_a_protocol_is_a_clear_error(synthetic_root, tmp_path):
    index = index_category(synthetic_root, "stripes")
    one = index.__class__(index.root, index.category, index.train[:1], index.test)
    with pytest.raises(DataError, match="too few to hold out"):
        plan_selection(one, SelectionConfig())
    single = index.__class__(index.root, index.category, index.train, index.test[:5])
    with pytest.raises(DataError, match="test_fold needs at least 2 per defect type"):
        plan_selection(single, SelectionConfig(protocol="test_fold"))


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_each_synthetic_defect_changes_exactly_its_mask(kind):
    rng = np.random.default_rng(0)
    base = np.full((64, 64, 3), 120, np.uint8)
    base[:, ::4] = 40  # stripes, so cut-paste has something to move
    other = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out, mask = add_defect(base, other, kind, np.random.default_rng(1))
    assert 0.002 * 64 * 64 <= mask.sum() <= 0.5 * 64 * 64
    np.testing.assert_array_equal((out != base).any(-1), mask.astype(bool))
    again, _ = add_defect(base, other, kind, np.random.default_rng(1))
    np.testing.assert_array_equal(out, again)


def test_synthetic_defects_reach_the_border_as_real_ones_do():
    """Validation that never puts a defect on the outer cells cannot reward finding one there."""
    size, band = 128, 10  # band: about the outer 8% of the side
    base = np.full((size, size, 3), 120, np.uint8)
    other = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    outer = np.ones((size, size), bool)
    outer[band:-band, band:-band] = False
    touching_edge = touching_band = 0
    draws = 200
    for i in range(draws):
        _, mask = add_defect(base, other, "noise", np.random.default_rng(i))
        touching_band += bool(mask[outer].any())
        touching_edge += bool(mask[[0, -1]].any() or mask[:, [0, -1]].any())
    assert touching_band > 0.3 * draws
    assert touching_edge > 0.1 * draws


def test_synthetic_defects_span_small_to_large_as_real_ones_do():
    """Real defects run from a scratch to a missing part; a validation set of one size cannot
    tell a model that finds small defects from one whose maps spread beyond large ones."""
    size = 128
    base = np.full((size, size, 3), 120, np.uint8)
    other = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    shares = np.array(
        [add_defect(base, other, "noise", np.random.default_rng(i))[1].mean() for i in range(200)]
    )
    assert (shares < 0.01).mean() > 0.15  # small: under 1% of the image
    assert (shares > 0.08).mean() > 0.15  # large: bottle's real defects cover 5.7% (median)
    assert 0.01 < np.median(shares) < 0.08


def test_twins_cycle_through_the_kinds_and_are_seeded():
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    twins, masks, kinds = defective_twins(images, seed=0)
    assert kinds == [*DEFECT_KINDS, DEFECT_KINDS[0]] and masks.shape == (4, 32, 32)
    assert not np.array_equal(twins, defective_twins(images, seed=1)[0])


def test_selection_is_one_per_study_not_a_searched_or_fixed_key(tmp_path):
    from dhkd.study.design.spec import parse_spec

    tree = {
        "name": "s",
        "description": "d",
        "preset": "tiny",
        "data": {"root": str(tmp_path), "dataset": "custom", "categories": ["a"]},
        "fixed": {"optim.epochs": 3},
        "scheduler": {"type": "none"},
        "selection": {"protocol": "test_fold", "val_fraction": 0.3},
    }
    spec = parse_spec(tree)
    cfg = spec.base_config()
    assert (cfg.selection.protocol, cfg.selection.val_fraction) == ("test_fold", 0.3)
    assert parse_spec({**tree, "selection": {}}).base_config().selection.protocol == "synthetic"
    with pytest.raises(ConfigError, match="one per study"):
        parse_spec({**tree, "fixed": {"selection.protocol": "test"}})


def _count_reads(monkeypatch) -> list[str]:
    reads: list[str] = []
    original = images_module.load_image

    def counting(path, size):
        reads.append(str(path))
        return original(path, size)

    monkeypatch.setattr(images_module, "load_image", counting)
    return reads


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dhkd", "knn"])
def test_no_real_defective_test_image_is_read_before_the_final_evaluation(
    synthetic_root, monkeypatch, method
):
    index = index_category(synthetic_root, "widget")
    defective = {str(s.path) for s in index.test if s.label == 1}
    reads = _count_reads(monkeypatch)
    cfg = load_config("tiny", overrides={"method": method, "optim.eval_every": 1})
    seen_at_epochs = []

    def callback(report):
        seen_at_epochs.append(len([p for p in reads if p in defective]))
        assert any(k.startswith("val/") for k in report.metrics)

    result = fit_units(
        cfg,
        synthetic_root,
        [("widget", 0), ("widget", 1)],
        callback=callback,
        feature_cache=FeatureCache(directory=""),
        progress=False,
    )
    assert seen_at_epochs and set(seen_at_epochs) == {0}
    final = [p for p in reads if p in defective]
    assert sorted(final) == sorted(defective)  # each read once, for the final evaluation
    assert "test/widget/pixel_aupro" in result.metrics


def test_the_read_counter_sees_reads_under_the_test_protocol(synthetic_root, monkeypatch):
    index = index_category(synthetic_root, "widget")
    defective = {str(s.path) for s in index.test if s.label == 1}
    reads = _count_reads(monkeypatch)
    cfg = load_config("tiny", overrides={"method": "knn", "selection.protocol": "test"})
    seen = []
    result = fit_units(
        cfg,
        synthetic_root,
        [("widget", 0)],
        callback=lambda r: seen.append(len([p for p in reads if p in defective])),
        feature_cache=FeatureCache(directory=""),
        progress=False,
    )
    assert seen == [len(defective)]  # validation = test: read before the first evaluation
    m = result.metrics
    assert m["val/pixel_aupro"] == m["test/pixel_aupro"]
    assert result.selection["label"] == "selected on the test set (optimistic)"
