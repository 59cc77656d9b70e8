"""score.level_norm: each level's map divided by its mean over train images, kept in the model."""

import numpy as np
import pytest
import torch

from dhkd.config import apply_overrides, load_config
from dhkd.features import CachedSplit, extract_features
from dhkd.methods.base import CALIBRATION_ROWS, LEVEL_SCALE
from dhkd.methods.registry import get_method, make_unit
from dhkd.training.loop import run_earlier_stages

SIZE = 64


def _split(n: int, cfg, seed: int = 0) -> CachedSplit:
    images = np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
    return CachedSplit(
        features=extract_features(cfg, images, torch.device("cpu")),
        images=images,
        labels=np.zeros(n, dtype=np.int64),
        masks=np.zeros((n, SIZE, SIZE), np.uint8),
        paths=("",) * n,
    )


def _unit(method: str, level_norm: str, n: int = 6):
    cfg = load_config("tiny", overrides={"method": method, "score.level_norm": level_norm})
    return make_unit(cfg, "widget", 0, _split(n, cfg), torch.device("cpu"))


def _train(unit) -> None:
    """The earlier stages (dhkd's teacher) as fit_units runs them, then one epoch of the last."""
    *earlier, last = get_method(unit.cfg.method).stages(unit.cfg)
    run_earlier_stages([unit], earlier, progress=False, losses={})
    unit.run_epoch(last.name, 1)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dhkd", "bikd"])
def test_calibration_sets_each_levels_mean_over_the_train_images(method):
    unit = _unit(method, "train_mean")
    _train(unit)
    unit.calibrate_levels()
    rows = torch.arange(len(unit.train.labels))
    maps = unit.level_maps(unit.train, rows)
    expected = torch.stack([m.float().mean() for m in maps])
    scale = getattr(unit.model, LEVEL_SCALE)
    torch.testing.assert_close(scale, expected)
    assert not torch.allclose(scale, torch.ones_like(scale))
    for got, m, s in zip(unit.rescale(maps), maps, scale, strict=True):
        torch.testing.assert_close(got, m / s)


def test_calibration_reads_at_most_its_share_of_a_large_train_set():
    unit = _unit("dhkd", "train_mean", n=CALIBRATION_ROWS + 20)
    seen = []
    level_maps = unit.level_maps
    unit.level_maps = lambda split, idx: seen.extend(idx.tolist()) or level_maps(split, idx)
    unit.calibrate_levels()
    assert len(seen) == CALIBRATION_ROWS == len(set(seen))
    assert seen[0] == 0 and seen[-1] == len(unit.train.labels) - 1


def test_without_level_norm_the_maps_are_untouched():
    unit = _unit("dhkd", "none")
    unit.calibrate_levels()
    maps = unit.level_maps(unit.train, torch.arange(2))
    assert torch.equal(getattr(unit.model, LEVEL_SCALE), torch.ones(len(maps)))
    for got, m in zip(unit.rescale(maps), maps, strict=True):
        assert torch.equal(got, m)


def test_the_divisors_travel_with_the_training_state_and_old_weights_load_with_ones():
    unit = _unit("dhkd", "train_mean")
    unit.calibrate_levels()
    resumed = _unit("dhkd", "train_mean")
    resumed.load_state_dict(unit.state_dict())
    assert torch.equal(getattr(resumed.model, LEVEL_SCALE), getattr(unit.model, LEVEL_SCALE))
    old = {k: v for k, v in unit.model.state_dict().items() if k != LEVEL_SCALE}
    fresh = _unit("dhkd", "none")
    fresh.load_weights(old)  # weights written before score.level_norm existed
    assert torch.equal(getattr(fresh.model, LEVEL_SCALE), torch.ones(2))


def test_the_knn_reference_has_one_map_to_scale():
    unit = _unit("knn", "train_mean")
    unit.run_epoch("fit", 1)
    unit.calibrate_levels()
    assert getattr(unit.model, LEVEL_SCALE).shape == (1,)


def test_only_dhkds_quick_preset_normalises_levels():
    def norm(preset, method):
        return load_config(preset, overrides={"method": method}).score.level_norm

    assert norm("quick", "dhkd") == "train_mean"
    assert {norm("quick", "bikd"), norm("quick", "knn"), norm("paper", "dhkd")} == {"none"}
    cfg = apply_overrides(load_config("quick"), {"score.level_norm": "none"})
    assert "level_norm" not in cfg.score.fusion_args()
