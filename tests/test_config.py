"""Run configs: the shared sections plus the active method's, and nothing of another method."""

from __future__ import annotations

import pytest
import yaml

from dhkd.config import apply_overrides, dump_config, load_config
from dhkd.errors import ConfigError
from dhkd.methods.registry import get_method, method_names


def _sections(cfg) -> set[str]:
    return {k.split(".")[0] for k in cfg.to_flat_dict()}


SHARED = {"method", "seed", "data", "backbone", "score", "optim", "threshold", "selection"}


@pytest.mark.parametrize("method", ["dhkd", "bikd", "knn"])
@pytest.mark.parametrize("preset", ["quick", "paper", "tiny"])
def test_a_config_holds_the_shared_sections_and_its_methods_only(method, preset):
    cfg = load_config(preset, overrides={"method": method})
    assert _sections(cfg) == SHARED | set(get_method(method).sections)
    assert set(method_names()) >= {"dhkd", "bikd", "knn"}


def test_presets_keep_their_method_values():
    assert load_config("quick").teacher.depth == 4 and load_config("quick").teacher.epochs == 3
    assert load_config("paper").teacher.epochs == 40
    tiny = load_config("tiny")
    assert (tiny.teacher.depth, tiny.teacher.epochs, tiny.student.blocks) == (2, 1, 1)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"bikd.direction": "forward"}, "bikd.direction belongs to method 'bikd', but this run's"),
        (
            {"method": "bikd", "teacher.depth": 4},
            "teacher.depth belongs to method 'dhkd', but this run's method is 'bikd'",
        ),
        ({"method": "knn", "noise.sigma": 0.1}, "noise.sigma belongs to method 'dhkd'"),
        ({"method": "dhkd", "knn.k": 3}, "knn.k belongs to method 'knn'"),
        ({"method": "patchcore"}, "unknown method 'patchcore'"),
        ({"teacher.dpeth": 3}, "unknown key 'teacher.dpeth'"),
    ],
)
def test_keys_of_another_method_are_errors_that_name_it(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", overrides=overrides)


def test_apply_overrides_keeps_the_method():
    cfg = load_config("tiny", overrides={"method": "bikd"})
    assert apply_overrides(cfg, {"bikd.direction": "forward"}).bikd.direction == "forward"
    with pytest.raises(ConfigError, match="cannot change the method"):
        apply_overrides(cfg, {"method": "dhkd"})


def test_dumped_config_loads_back_and_old_whole_dumps_drop_other_methods(tmp_path):
    cfg = load_config("tiny", overrides={"method": "bikd", "bikd.augment": False})
    path = tmp_path / "config.yaml"
    dump_config(cfg, path)
    assert "teacher" not in yaml.safe_load(path.read_text())
    assert load_config("tiny", path) == cfg
    # a whole config stored when runs kept every method's sections: the others are dropped
    old = {**yaml.safe_load(path.read_text()), "teacher": {"depth": 2}, "noise": {"sigma": 0.2}}
    path.write_text(yaml.safe_dump(old))
    assert load_config("tiny", path) == cfg
    # a partial file is the user's: a key of another method stays an error
    path.write_text(yaml.safe_dump({"method": "bikd", "teacher": {"depth": 2}}))
    with pytest.raises(ConfigError, match=r"teacher\.depth belongs to method 'dhkd'"):
        load_config("tiny", path)


def test_quick_presets_pool_the_students_maps_and_keep_the_references_maximum():
    """DHKD and BiKD score an image by the mean of its map's top pixels, 3% and 0.3% (chosen
    leave-one-category-out, docs/decisions.md#topk-fraction); the kNN reference keeps the
    maximum, its usual form."""
    pooling = {m: load_config("quick", overrides={"method": m}).score for m in ("dhkd", "bikd")}
    got = {m: (s.pooling, s.topk_fraction, s.pool) for m, s in pooling.items()}
    assert got == {"dhkd": ("topk", 0.03, "fused"), "bikd": ("topk", 0.003, "fused")}
    assert load_config("quick", overrides={"method": "knn"}).score.pooling == "max"
    assert load_config("paper", overrides={"method": "dhkd"}).score.pooling == "max"
