"""The knn reference: greedy coreset, chunked distances, and a run through fit_units."""

from __future__ import annotations

import io

import pytest
import torch

from dhkd.config import load_config
from dhkd.errors import TrainingError
from dhkd.features import FeatureCache
from dhkd.methods.knn.model import greedy_coreset, knn_distance
from dhkd.methods.registry import get_method, make_unit
from dhkd.training.fit import fit_units

CPU = torch.device("cpu")


def test_greedy_coreset_takes_the_farthest_point_each_time():
    points = torch.tensor([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [0.0, 5.0], [10.0, 0.2]])
    gen = torch.Generator().manual_seed(0)
    chosen, dist = greedy_coreset(points, 3, projection_dim=8, generator=gen)
    assert len(set(chosen.tolist())) == 3
    kept = points[chosen]
    expected = torch.cdist(points, kept).min(dim=1).values
    torch.testing.assert_close(dist, expected, atol=1e-4, rtol=1e-4)
    assert dist.max() <= 0.25  # the three clusters are each covered


def test_knn_distance_in_chunks_equals_the_direct_computation():
    g = torch.Generator().manual_seed(1)
    queries, bank = torch.randn(300, 6, generator=g), torch.randn(50, 6, generator=g)
    direct = torch.cdist(queries, bank).topk(3, dim=1, largest=False).values.mean(dim=1)
    chunked = knn_distance(queries, bank, k=3, chunk_elements=50 * 7)
    torch.testing.assert_close(chunked, direct)


@pytest.fixture(scope="module")
def cache() -> FeatureCache:
    return FeatureCache(directory="")


@pytest.mark.slow
def test_knn_runs_through_fit_units_in_one_stage(synthetic_root, cache, tmp_path):
    cfg = load_config("tiny", overrides={"method": "knn", "knn.coreset_ratio": 0.5})
    assert [s.name for s in get_method("knn").stages(cfg)] == ["fit"]
    reports = []
    result = fit_units(
        cfg, synthetic_root, [("stripes", 0)], callback=reports.append, out_dir=tmp_path,
        feature_cache=cache, progress=False,
    )  # fmt: skip
    assert [r.epoch for r in reports] == [1] and result.epochs == 1
    assert result.metrics["test/image_auroc"] > 0.8  # generated defects are easy for a kNN
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["config"]["method"] == "knn" and "teacher" not in saved["config"]
    assert saved["units"][0]["model"]["bank"].shape[0] > 0


def test_state_round_trips(synthetic_root, cache):
    cfg = load_config("tiny", overrides={"method": "knn", "knn.coreset_min": 16})
    train = cache.get(cfg, synthetic_root, "stripes", "train", CPU)
    test = cache.get(cfg, synthetic_root, "stripes", "test", CPU)
    unit = make_unit(cfg, "stripes", 0, train, CPU)
    unit.run_epoch("fit", 1)
    buffer = io.BytesIO()
    torch.save(unit.state_dict(), buffer)
    buffer.seek(0)
    fresh = make_unit(cfg, "stripes", 0, train, CPU)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    for a, b in zip(unit.predict(test), fresh.predict(test), strict=True):
        assert (a == b).all()
    other = make_unit(load_config("tiny"), "stripes", 0, train, CPU)
    with pytest.raises(TrainingError, match="not a knn checkpoint"):
        fresh.load_state_dict(other.state_dict())
