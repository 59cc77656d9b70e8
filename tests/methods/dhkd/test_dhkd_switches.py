"""Every ablation switch of the DHKD model builds, trains a step and changes the output."""

import numpy as np
import pytest
import torch

from dhkd.config import apply_overrides, load_config
from dhkd.methods.dhkd.unit import build_dhkd_model
from dhkd.models.anomaly_map import score_maps
from dhkd.models.norm import FeatureNorm

SHAPES = [(8, 8, 8), (12, 4, 4)]


def _features(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, c, h, w, generator=g) for c, h, w in SHAPES]


def _trained_output(overrides: dict) -> torch.Tensor:
    cfg = apply_overrides(load_config("tiny"), overrides)
    feats = _features()
    torch.manual_seed(0)
    np.random.seed(0)  # FrEIA draws its channel permutations from numpy's global generator
    model = build_dhkd_model(cfg, SHAPES, FeatureNorm.statistics(feats))
    noise, objective = cfg.noise.model_dump(), cfg.loss.model_dump(exclude={"kd"})
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        loss = model.teacher_loss(feats) + model.student_loss(feats, g, noise=noise, loss=objective)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = score_maps(model(_features(1)), 32, **cfg.score.fusion_args())
    assert out.anomaly_map.shape == (4, 32, 32)
    assert out.pred_score.shape == (4,)
    assert torch.isfinite(out.anomaly_map).all()
    return out.anomaly_map


SWITCHES = [
    {"teacher.depth": 3},
    {"teacher.hidden_ratio": 2.0},
    {"teacher.pos_enc": True},
    {"noise.sigma": 0.0},
    {"noise.mask": "patches"},
    {"noise.prob": 0.5},
    {"student.variant": "none"},
    {"student.variant": "spatial"},
    {"student.variant": "frequency"},
    {"student.freq_branch": "global_filter"},
    {"student.blocks": 2},
    {"student.hidden_ratio": 2.0},
    {"student.kind": "flow"},
    {"loss.kd": "cosine"},
    {"loss.affinity_weight": 0.0},
    {"loss.affinity_weight": 1.0, "loss.affinity_form": "dot"},
    {"loss.affinity_weight": 1.0, "loss.affinity_pool": 2},
    {"score.fusion": "product"},
    {"score.smoothing_sigma": 0.0},
    {"backbone.feature_norm": "layernorm"},
    {"backbone.feature_norm": "none"},
]


@pytest.fixture(scope="module")
def baseline() -> torch.Tensor:
    return _trained_output({"loss.affinity_weight": 0.5})


@pytest.mark.parametrize(
    "overrides", SWITCHES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
)
def test_switch_changes_the_output(baseline, overrides):
    out = _trained_output({"loss.affinity_weight": 0.5, **overrides})
    assert not torch.allclose(out, baseline, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_same_config_and_seed_give_the_same_output(baseline):
    assert torch.equal(_trained_output({"loss.affinity_weight": 0.5}), baseline)


@pytest.mark.parametrize("pooling", ["mean", "topk"])
def test_score_pooling_switch_changes_scores(pooling):
    cfg = load_config("tiny")
    feats = _features()
    torch.manual_seed(0)
    model = build_dhkd_model(cfg, SHAPES, FeatureNorm.statistics(feats))
    other = apply_overrides(cfg, {"score.pooling": pooling})
    a = score_maps(model(feats), 32, **cfg.score.fusion_args())
    b = score_maps(model(feats), 32, **other.score.fusion_args())
    assert torch.equal(a.anomaly_map, b.anomaly_map)
    assert not torch.allclose(a.pred_score, b.pred_score)
