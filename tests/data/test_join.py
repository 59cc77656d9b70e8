"""A study over categories of several data roots (`data.root: [A, B]`): each category is read
from the one root that holds it, through a joined root of links under the storage path."""

from __future__ import annotations

import shutil

import pytest

from dhkd.config import load_config
from dhkd.data.join import join_roots, locate_categories
from dhkd.errors import ConfigError, DataError
from dhkd.features import FeatureCache
from dhkd.fingerprint import dataset_inputs
from dhkd.study import smoke_spec
from dhkd.study.design.spec import parse_spec
from dhkd.study.driver.runner import resolve_data
from dhkd.study.state.layout import StudyPaths
from dhkd.training.fit import fit_units


@pytest.fixture
def two_roots(synthetic_root, tmp_path):
    """stripes under tmp/a, widget under tmp/b: copies of the session's synthetic dataset."""
    for name, category in (("a", "stripes"), ("b", "widget")):
        shutil.copytree(synthetic_root / category, tmp_path / name / category)
    return tmp_path / "a", tmp_path / "b"


def _spec(roots, base_dir="."):
    return parse_spec(
        {
            "name": "joined",
            "description": "categories of two roots",
            "preset": "tiny",
            "data": {"root": roots, "dataset": "custom", "categories": ["stripes", "widget"]},
            "scientific": {"noise.sigma": {"type": "categorical", "values": [0.1]}},
            "sampler": {"type": "grid"},
            "scheduler": {"type": "none"},
        },
        base_dir=base_dir,
    )


@pytest.mark.slow
def test_each_category_is_read_from_the_root_that_holds_it(two_roots, synthetic_root, tmp_path):
    a, b = two_roots
    spec = _spec([str(a), str(b)])
    assert spec.data_roots() == [a, b] and spec.data_root() is None
    joined = resolve_data(spec, StudyPaths(tmp_path / "ray", "joined"))
    assert joined.parent == tmp_path / "ray" / "data"
    assert sorted(p.name for p in joined.iterdir()) == ["stripes", "widget"]
    assert (joined / "stripes").resolve() == (a / "stripes").resolve()
    assert resolve_data(spec, StudyPaths(tmp_path / "ray", "joined")) == joined  # kept

    cfg = load_config("tiny", overrides={"optim.epochs": 1})
    units = [("stripes", 0), ("widget", 0)]
    here = fit_units(cfg, joined, units, feature_cache=FeatureCache(tmp_path / "f1"),
                     progress=False)  # fmt: skip
    there = fit_units(cfg, synthetic_root, units, feature_cache=FeatureCache(tmp_path / "f2"),
                      progress=False)  # fmt: skip
    assert here.metrics == there.metrics  # the same files, read through the links
    assert here.fingerprint["data"]["digest"] == there.fingerprint["data"]["digest"]
    sources = {d["name"]: d["source"] for d in dataset_inputs(here.fingerprint)}
    assert sources == {"stripes": str((a / "stripes").resolve()),
                       "widget": str((b / "widget").resolve())}  # fmt: skip


def test_a_category_in_no_root_or_in_two_is_an_error_naming_the_roots(two_roots, tmp_path):
    a, b = two_roots
    with pytest.raises(DataError, match=r"\['bottle'\] are in none of the data roots") as info:
        locate_categories([a, b], ["stripes", "bottle"])
    assert str(a) in str(info.value) and str(b) in str(info.value)
    shutil.copytree(a / "stripes", b / "stripes")
    with pytest.raises(DataError, match="more than one data root: stripes") as info:
        resolve_data(_spec([str(a), str(b)]), StudyPaths(tmp_path / "ray", "joined"))
    assert "exactly one root" in str(info.value)
    assert not (tmp_path / "ray" / "data").exists()  # nothing half-made


def test_join_roots_replaces_links_that_point_elsewhere(two_roots, tmp_path):
    a, b = two_roots
    out = tmp_path / "joined"
    join_roots({"stripes": a / "stripes"}, out)
    join_roots({"stripes": b / "widget"}, out)
    assert (out / "stripes").resolve() == (b / "widget").resolve()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".joined-")]


@pytest.mark.parametrize("roots", [[], ["x", "x"]])
def test_a_list_of_roots_must_be_non_empty_and_distinct(roots):
    with pytest.raises(ConfigError, match=r"data\.root"):
        _spec(roots)


def test_relative_roots_resolve_against_the_base_dir_and_smoke_keeps_them(two_roots, tmp_path):
    spec = _spec(["a", "b"], base_dir=tmp_path)
    assert spec.data_roots() == [tmp_path / "a", tmp_path / "b"]
    smoke = smoke_spec(spec)
    assert smoke.data.root == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert smoke.data.synthetic is None
