"""Study files: every studies/**/*.yaml loads; malformed specs fail with errors naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from dhkd.errors import ConfigError
from dhkd.study import load_spec, smoke_spec
from dhkd.study.design.spec import MVTEC_CATEGORIES, parse_spec

SUITES = "suites"  # studies/suites/ holds suite files (tests/suite/), not study specs
STUDIES = sorted(
    p
    for p in (Path(__file__).resolve().parents[3] / "studies").rglob("*.yaml")
    if SUITES not in p.parts
)
REQUIRED = {"quickstart", "noise_level", "flow_depth", "affinity_weight", "dual_domain",
            "heterogeneity", "search"}  # fmt: skip


def test_the_required_studies_exist():
    assert {p.stem for p in STUDIES} >= REQUIRED


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_every_study_loads_and_has_a_smoke_version(path):
    spec = load_spec(path)
    assert spec.name == path.stem
    assert spec.trials >= 1 and spec.units
    for params in ({}, {k: p.candidates()[0] for k, p in spec.space.items() if not p.when}):
        spec.trial_config(params)
    smoke = smoke_spec(spec)
    assert smoke.preset == "tiny" and smoke.trials <= 2 and len(smoke.data.category_names) <= 2
    assert smoke.trial_config({}).data.image_size == 64
    assert smoke.resources.gpu == 0


def test_paper_ablations_cover_the_15_mvtec_categories():
    for name in REQUIRED - {"quickstart"}:
        spec = load_spec(next(p for p in STUDIES if p.stem == name))
        assert spec.data.category_names == list(MVTEC_CATEGORIES)
        assert (
            spec.data_root()
            == (Path(__file__).resolve().parents[3] / ".." / "shared/data/mvtec_ad").resolve()
        )


def test_dual_domain_variants_and_conditional_frequency_branch():
    spec = load_spec(next(p for p in STUDIES if p.stem == "dual_domain"))
    assert spec.scientific["student.variant"].values == ["none", "spatial", "frequency", "dual"]
    assert spec.nuisance["student.freq_branch"].when == {"student.variant": ["frequency", "dual"]}


BASE = {
    "name": "t",
    "description": "d",
    "data": {"root": "/nowhere", "categories": ["bottle"]},
    "fixed": {"optim.epochs": 4},
    "scientific": {"noise.sigma": {"type": "float", "low": 0.0, "high": 0.5}},
}


def _with(path: str, value):
    tree = copy.deepcopy(BASE)
    node = tree
    keys = path.split("/")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return tree


@pytest.mark.parametrize(
    ("tree", "names"),
    [
        (_with("sampler/kind", "tpe"), ["sampler.kind", "unknown key"]),
        (_with("colour", "red"), ["colour", "unknown key"]),
        (_with("num_samples", "many"), ["num_samples"]),
        (_with("seeds", "zero"), ["seeds"]),
        (
            _with("scientific/noise.sigma", {"type": "float", "low": 0.5, "high": 0.5}),
            ["scientific.noise.sigma", "empty range"],
        ),
        (
            _with("scientific/noise.sigma", {"type": "int", "low": 3, "high": 1}),
            ["scientific.noise.sigma", "empty range"],
        ),
        (
            _with("scientific/noise.sigma", {"type": "categorical", "values": []}),
            ["scientific.noise.sigma.values"],
        ),
        (_with("data/categories", ["bottle", "botle"]), ["data.categories", "botle"]),
        (_with("objective/metric", "pixel_aproo"), ["objective.metric"]),
        (
            _with("scientific/noise.sigmaa", {"type": "float", "low": 0, "high": 1}),
            ["noise.sigmaa", "unknown key"],
        ),
        (
            _with("scientific/student.variant", {"type": "categorical", "values": ["dul"]}),
            ["student.variant", "dul"],
        ),
        (_with("fixed/optim.lr", "fast"), ["fixed", "optim.lr"]),
        (
            _with(
                "nuisance/student.freq_branch",
                {
                    "type": "categorical",
                    "values": ["conv1x1"],
                    "when": {"student.variant": ["dual"]},
                },
            ),
            ["student.freq_branch", "student.variant"],
        ),
        (_with("scheduler/grace_period", 4), ["scheduler.grace_period"]),
        (_with("data", {"synthetic": {"categories": ["a"]}, "root": "/x"}), ["data"]),
        (_with("method", "patchcore"), ["method", "unknown method 'patchcore'", "dhkd, bikd"]),
        (
            _with("fixed/bikd.direction", "forward"),
            ["bikd.direction belongs to method 'bikd'", "method is 'dhkd'"],
        ),
        (
            {
                **_with("method", "knn"),
                "scientific": {"knn.k": {"type": "int", "low": 1, "high": 3}},
            },
            ["scheduler.grace_period", "1 epochs of method knn"],
        ),
        (
            {**_with("method", "bikd"), "fixed": {"optim.epochs": 4}},
            ["noise.sigma belongs to method 'dhkd'", "method is 'bikd'"],
        ),
    ],
)
def test_malformed_specs_name_the_key(tree, names):
    with pytest.raises(ConfigError) as info:
        parse_spec(tree)
    for name in names:
        assert name in str(info.value)


def test_relative_data_root_resolves_against_the_spec_folders_parent(tmp_path):
    (tmp_path / "studies").mkdir()
    path = tmp_path / "studies" / "x.yaml"
    path.write_text(
        yaml.safe_dump(
            {**BASE, "name": "x", "data": {"root": "data/mvtec", "categories": "bottle"}}
        )
    )
    spec = load_spec(path)
    assert spec.data_root() == tmp_path / "data" / "mvtec"
    assert spec.data.category_names == ["bottle"]


def test_smoke_replaces_an_absent_root_with_generated_data_and_drops_owned_keys():
    tree = _with(
        "nuisance/backbone.name", {"type": "categorical", "values": ["resnet18", "wide_resnet50_2"]}
    )
    tree["data"] = {"root": "/nowhere", "categories": "all"}
    smoke = smoke_spec(parse_spec(tree))
    assert smoke.data.synthetic is not None
    assert smoke.data.category_names == ["bottle", "cable"]
    assert "backbone.name" not in smoke.space and "noise.sigma" in smoke.space
    assert smoke.name == "t-smoke"


def test_a_method_in_the_space_gives_each_trial_that_methods_sections_only():
    tree = {**BASE, "scientific": {"method": {"type": "categorical", "values": ["dhkd", "bikd"]}}}
    spec = parse_spec(tree)
    dhkd, bikd = spec.trial_config({"method": "dhkd"}), spec.trial_config({"method": "bikd"})
    assert "teacher.depth" in dhkd.to_flat_dict() and "bikd.direction" not in dhkd.to_flat_dict()
    assert "bikd.direction" in bikd.to_flat_dict() and "teacher.depth" not in bikd.to_flat_dict()
    assert bikd.optim.epochs == dhkd.optim.epochs == 4
