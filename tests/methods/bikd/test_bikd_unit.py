"""The bikd training unit: trains through fit_units, checkpoints round-trip, resume is exact."""

import io

import numpy as np
import pytest
import torch

from dhkd.config import load_config
from dhkd.errors import TrainingError
from dhkd.features import FeatureCache
from dhkd.methods.bikd.model import cosine_distance
from dhkd.methods.bikd.unit import BiKDUnit
from dhkd.methods.registry import get_method, make_unit
from dhkd.models.norm import FeatureNorm
from dhkd.training.fit import fit_units
from dhkd.training.loop import EpochReport

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cache() -> FeatureCache:
    return FeatureCache(directory="")  # memory only: no files outside tmp


def _cfg(**overrides):
    return load_config("tiny", overrides={"method": "bikd", **overrides})


def _unit(cfg, synthetic_root, cache, seed: int = 0) -> BiKDUnit:
    train = cache.get(cfg, synthetic_root, "stripes", "train", CPU)
    unit = make_unit(cfg, "stripes", seed, train, CPU)
    assert isinstance(unit, BiKDUnit)
    return unit


@pytest.mark.slow
def test_fit_units_trains_bikd_and_returns_the_metrics(synthetic_root, cache, tmp_path):
    reports: list[EpochReport] = []
    result = fit_units(
        _cfg(),
        synthetic_root,
        [("stripes", 0), ("widget", 1)],
        callback=reports.append,
        out_dir=tmp_path,
        feature_cache=cache,
        progress=False,
    )
    for key in (
        "test/image_auroc",
        "val/pixel_auroc",
        "test/pixel_aupro",
        "test/stripes/image_auroc",
    ):
        assert 0.0 <= result.metrics[key] <= 1.0
    assert [r.epoch for r in reports] == [1, 2]
    assert all(np.isfinite(r.metrics["train/loss"]) for r in reports)
    assert {u["category"] for u in result.units} == {"stripes", "widget"}
    assert all(u["train_seconds"] > 0 for u in result.units)
    assert (tmp_path / "maps_widget_s1.png").is_file()
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["config"]["method"] == "bikd"


def test_one_stage_and_no_dhkd_sections():
    cfg = _cfg()
    assert [s.name for s in get_method("bikd").stages(cfg)] == ["student"]
    assert not any(
        k.startswith(("teacher.", "noise.", "student.", "loss.")) for k in cfg.to_flat_dict()
    )


def test_backbone_in_the_unit_reproduces_the_cached_features(synthetic_root, cache):
    unit = _unit(_cfg(), synthetic_root, cache)
    assert unit.backbone is not None
    idx = torch.arange(4)
    with torch.no_grad():
        fresh = unit.backbone(unit._images(unit.train_images, idx))
    for f, cached in zip(fresh, unit._features(unit.train, idx), strict=True):
        torch.testing.assert_close(f.half().float(), cached, rtol=2e-3, atol=2e-3)


def test_backbone_is_only_built_when_augmenting(synthetic_root, cache):
    assert _unit(_cfg(**{"bikd.augment": False}), synthetic_root, cache).backbone is None
    assert _unit(_cfg(**{"bikd.backward_weight": 0}), synthetic_root, cache).backbone is None


@pytest.mark.slow
def test_erased_patches_reach_the_reverse_distiller_only(synthetic_root, cache, monkeypatch):
    cfg = _cfg(**{"bikd.augment": False, "bikd.erase_prob": 1.0, "bikd.erase_count": 1})
    unit = _unit(cfg, synthetic_root, cache)
    seen = []
    loss = unit.model.loss
    monkeypatch.setattr(unit.model, "loss", lambda *a: seen.append(a) or loss(*a))
    unit.run_epoch("student", 1)
    for _, clean, augmented in seen:
        for c, a in zip(clean, augmented, strict=True):
            changed = (a != c).any(dim=1).float()  # (B, h, w): the erased positions
            share = changed.mean(dim=(1, 2))
            assert ((share > 0) & (share < 0.2)).all()  # every sample: one patch, rest intact
    off = _unit(_cfg(**{"bikd.augment": False}), synthetic_root, cache)
    assert not off.erases and unit.erases
    assert not _unit(
        _cfg(**{"bikd.erase_prob": 1.0, "bikd.direction": "forward"}), synthetic_root, cache
    ).erases


def test_quick_preset_erases_instead_of_pasting_images():
    cfg = load_config("quick", overrides={"method": "bikd"})
    assert (cfg.bikd.augment, cfg.bikd.erase_prob, cfg.optim.min_epoch_samples) == (False, 1.0, 64)
    paper = load_config("paper", overrides={"method": "bikd"})  # the abstract's augmentation
    assert (paper.bikd.augment, paper.bikd.erase_prob, paper.optim.min_epoch_samples) == (
        True,
        0,
        0,
    )


def test_quick_preset_scores_cosine_on_layernormed_features():
    """Both paths score 1 - cosine. Centred on the train set's channel means, a typical
    position's features are what is left after the mean: small, so their direction is mostly the
    reconstruction's error. A well reconstructed typical texture then scores as anomalous (BiKD
    flagged the whole cookie and missed its cracks in bench_carryover.py's zoomed cookie).
    Per-position LayerNorm keeps the channel profile, and the cosine measures reconstruction."""
    assert load_config("quick", overrides={"method": "bikd"}).backbone.feature_norm == "layernorm"
    gen = torch.Generator().manual_seed(0)
    profile = torch.rand(1, 64, 1, 1, generator=gen) + 0.5  # the texture's channel means
    typical = profile + 0.05 * torch.randn(8, 64, 16, 16, generator=gen)
    rebuilt = typical + 0.02 * torch.randn(8, 64, 16, 16, generator=gen)  # close, not exact
    stats = FeatureNorm.statistics([typical])

    def distance(kind: str) -> float:
        norm = FeatureNorm(kind, stats)
        return float(cosine_distance(norm([rebuilt])[0], norm([typical])[0]).mean())

    assert distance("layernorm") < 0.01 < 0.05 < distance("train_stats")


@pytest.mark.slow
def test_state_round_trips_and_resume_is_exact(synthetic_root, cache):
    cfg = _cfg(**{"bikd.erase_prob": 0.5})
    straight = _unit(cfg, synthetic_root, cache)
    straight.run_epoch("student", 1)
    buffer = io.BytesIO()
    torch.save(straight.state_dict(), buffer)
    straight.run_epoch("student", 2)

    resumed = _unit(cfg, synthetic_root, cache, seed=0)
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.epoch == 1
    resumed.run_epoch("student", 2)
    test = cache.get(cfg, synthetic_root, "stripes", "test", CPU)
    for a, b in zip(straight.predict(test), resumed.predict(test), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_fit_units_resume_matches_an_uninterrupted_run(synthetic_root, cache):
    cfg = _cfg()
    saved = []

    def keep(report: EpochReport) -> None:  # the state holds live tensors: write it out now
        buffer = io.BytesIO()
        torch.save(report.state(), buffer)
        saved.append(buffer.getvalue())

    full = fit_units(
        cfg,
        synthetic_root,
        [("stripes", 0)],
        callback=keep,
        feature_cache=cache,
        progress=False,
    )
    resumed = fit_units(
        cfg,
        synthetic_root,
        [("stripes", 0)],
        resume_state=torch.load(io.BytesIO(saved[0]), weights_only=True),
        feature_cache=cache,
        progress=False,
    )
    for key in ("image_auroc", "pixel_auroc", "pixel_aupro"):
        for name in (f"val/{key}", f"test/{key}"):
            assert resumed.metrics[name] == pytest.approx(full.metrics[name], abs=1e-6)


def test_wrong_checkpoints_are_refused(synthetic_root, cache):
    unit = _unit(_cfg(), synthetic_root, cache)
    other = _unit(_cfg(), synthetic_root, cache, seed=3)
    with pytest.raises(TrainingError, match="stripes/seed3"):
        unit.load_state_dict(other.state_dict())
    dhkd = make_unit(load_config("tiny"), "stripes", 0, unit.train, CPU)
    with pytest.raises(TrainingError, match="not a bikd checkpoint"):
        unit.load_state_dict(dhkd.state_dict())
