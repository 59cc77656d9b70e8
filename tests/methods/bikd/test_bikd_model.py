"""BiKD model and augmentation: every bikd switch builds, trains a step and changes the output;
the augmentation's masks mark exactly the changed pixels and a generator fixes the result."""

import pytest
import torch

from dhkd.config import apply_overrides, load_config
from dhkd.errors import ConfigError
from dhkd.methods.bikd.augment import simulate_anomalies
from dhkd.methods.bikd.model import (
    BiKDModel,
    Bottleneck,
    ForwardStudent,
    ReverseDistiller,
    cosine_distance,
    coupling_loss,
)
from dhkd.methods.bikd.unit import build_bikd_model
from dhkd.models.anomaly_map import score_maps
from dhkd.models.backbone import build_backbone
from dhkd.models.norm import FeatureNorm

SIZE = 64


def _images(n: int, seed: int) -> torch.Tensor:
    """Smooth random colour images (n, 3, SIZE, SIZE) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear")


def _trained_output(overrides: dict) -> torch.Tensor:
    cfg = apply_overrides(load_config("tiny", overrides={"method": "bikd"}), overrides)
    torch.manual_seed(0)
    backbone = build_backbone(cfg.backbone)
    train, test = _images(6, 0), _images(3, 1)
    with torch.no_grad():
        feats = backbone(train)
    shapes = [tuple(f.shape[1:]) for f in feats]
    model = build_bikd_model(cfg, shapes, FeatureNorm.statistics(feats))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    b = cfg.bikd
    for _ in range(2):
        augmented = None
        if b.augment:
            aug = simulate_anomalies(
                train, kind=b.augment_kind, prob=b.augment_prob, generator=g, sources=train,
                max_patches=b.augment_max_patches, min_size=b.augment_min_size,
                max_size=b.augment_max_size, min_opacity=b.augment_min_opacity,
            )  # fmt: skip
            with torch.no_grad():
                augmented = backbone(aug.images)
        loss, parts = model.loss(train, feats, augmented)
        assert torch.isfinite(loss)
        expected = {"forward"} if b.active_forward_weight > 0 else set()
        expected |= {"backward"} if b.active_backward_weight > 0 else set()
        assert set(parts) == expected | ({"coupling"} if b.coupling_weight > 0 else set())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = score_maps(model(test, backbone(test)), SIZE, **cfg.score.fusion_args())
    assert out.anomaly_map.shape == (3, SIZE, SIZE)
    assert out.pred_score.shape == (3,)
    assert torch.isfinite(out.anomaly_map).all()
    return out.anomaly_map


SWITCHES = [
    {"bikd.forward_weight": 0.0},
    {"bikd.backward_weight": 0.0},
    {"bikd.direction": "forward"},
    {"bikd.direction": "backward"},
    {"bikd.forward_weight": 2.0},
    {"bikd.forward_width": 16},
    {"bikd.forward_mse_weight": 1.0},
    {"bikd.coupling_weight": 1.0},
    {"bikd.bottleneck_ratio": 1.0},
    {"bikd.bottleneck_stride": 1},
    {"bikd.augment": False},
    {"bikd.augment_prob": 0.5},
    {"bikd.augment_kind": "noise"},
    {"bikd.augment_kind": "texture"},
    {"bikd.augment_max_patches": 4},
    {"bikd.augment_max_size": 0.5},
    {"bikd.augment_min_opacity": 1.0},
]


@pytest.fixture(scope="module")
def baseline() -> torch.Tensor:
    return _trained_output({"bikd.augment_prob": 1.0})


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides", SWITCHES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
)
def test_switch_changes_the_output(baseline, overrides):
    out = _trained_output({"bikd.augment_prob": 1.0, **overrides})
    assert not torch.allclose(out, baseline, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_same_config_gives_the_same_output(baseline):
    assert torch.equal(_trained_output({"bikd.augment_prob": 1.0}), baseline)


@pytest.mark.parametrize(
    "overrides, student, reverse",
    [
        ({"bikd.backward_weight": 0}, True, False),
        ({"bikd.forward_weight": 0}, False, True),
        ({"bikd.direction": "forward"}, True, False),
        ({"bikd.direction": "backward"}, False, True),
        ({}, True, True),
    ],
)
def test_paths_that_are_off_are_not_built(overrides, student, reverse):
    cfg = load_config("tiny", overrides={"method": "bikd", **overrides})
    stats = [(torch.zeros(c), torch.ones(c)) for c in (24, 32)]
    model = build_bikd_model(cfg, [(24, 8, 8), (32, 4, 4)], stats)
    assert (model.student is not None, model.reverse is not None) == (student, reverse)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"bikd.forward_weight": 0, "bikd.backward_weight": 0}, "cannot both be 0"),
        ({"bikd.direction": "forward", "bikd.forward_weight": 0}, "no distillation path"),
        ({"bikd.augment_min_size": 0.5, "bikd.augment_max_size": 0.2}, "augment_min_size"),
        ({"bikd.direction": "backward", "bikd.coupling_weight": 1}, "leaves only one"),
        ({"bikd.forward_weight": 0, "bikd.coupling_weight": 0.5}, "coupling_weight to 0"),
        ({"bikd.augment_kind": "cutpaste"}, "bikd.augment_kind"),
        ({"bikd.bottleneck_stride": 4}, "bikd.bottleneck_stride"),
        ({"bikd.bottlneck_ratio": 1}, "unknown key 'bikd.bottlneck_ratio'"),
    ],
)
def test_config_rejects_bad_bikd_settings(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", overrides={"method": "bikd", **overrides})


@pytest.mark.slow
def test_coupling_adds_the_reciprocal_term_and_trains_both_paths():
    """L(coupling c) = L(0) + c x mean-over-positions of the two pulls; each pull moves only its
    own path (the other side is the target), so the coupling term alone has gradients in both."""
    shapes = [(24, 8, 8), (32, 4, 4)]
    stats = [(torch.zeros(c), torch.ones(c)) for c, _, _ in shapes]
    images = _images(2, 3)
    g = torch.Generator().manual_seed(1)
    feats = [torch.randn(2, *shape, generator=g) for shape in shapes]

    def model(coupling: float):
        torch.manual_seed(0)
        return build_bikd_model(
            load_config("tiny", overrides={"method": "bikd", "bikd.coupling_weight": coupling}),
            shapes, stats,
        ).eval()  # fmt: skip

    plain, coupled = model(0.0), model(2.0)
    base, base_parts = plain.loss(images, feats)
    total, parts = coupled.loss(images, feats)
    s = coupled.student(images)
    d = coupled.reverse(coupled.norm(feats))
    expected = sum(cosine_distance(a, b).mean().item() for a, b in zip(s, d, strict=True))
    assert "coupling" not in base_parts
    assert parts["coupling"] == pytest.approx(expected, rel=1e-5)
    assert total.item() == pytest.approx(base.item() + 2.0 * expected, rel=1e-5)
    coupled.zero_grad()
    coupling_loss(s, d).backward()
    for path in (coupled.student, coupled.reverse):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in path.parameters())
    with pytest.raises(ValueError, match="needs both"):
        BiKDModel([(24, 8, 8)], stats[:1], levels=(2,), backward_weight=0, coupling_weight=1)


def test_module_shapes_and_bottleneck_width():
    shapes = [(40, 32, 32), (112, 16, 16)]
    feats = [torch.randn(2, *s) for s in shapes]
    neck = Bottleneck(shapes, ratio=0.5, stride=2)
    assert neck(feats).shape == (2, 76, 8, 8)
    assert Bottleneck(shapes, ratio=0.25, stride=1)(feats).shape == (2, 38, 16, 16)
    assert [o.shape for o in ReverseDistiller(shapes, 0.5, 2)(feats)] == [f.shape for f in feats]
    student = ForwardStudent(shapes, (2, 3), width=8)
    assert [o.shape for o in student(torch.rand(2, 3, 256, 256))] == [f.shape for f in feats]


# --- augmentation ----------------------------------------------------------------------------


def _augment(kind: str, seed: int, prob: float = 1.0, **kw):
    images = _images(8, 3)
    sources = (_images(5, 4) * 255).round().to(torch.uint8)
    g = torch.Generator().manual_seed(seed)
    return images, simulate_anomalies(
        images, kind=kind, prob=prob, generator=g, sources=sources, **kw
    )


@pytest.mark.parametrize("kind", ["noise", "texture", "both"])
def test_masks_mark_exactly_the_changed_pixels(kind):
    images, aug = _augment(kind, seed=0)
    changed = (aug.images - images).abs().amax(dim=1, keepdim=True) > 0
    assert aug.masks.shape == (8, 1, SIZE, SIZE)
    assert torch.equal(changed.float(), aug.masks)
    assert aug.chosen.all()  # prob 1: every image has a patch
    area = aug.masks.mean(dim=(1, 2, 3))
    assert (area > 0.002).all() and (area < 0.5).all()
    assert aug.images.min() >= 0 and aug.images.max() <= 1


def test_augmentation_is_fixed_by_the_generator():
    _, a = _augment("both", seed=5)
    _, b = _augment("both", seed=5)
    _, c = _augment("both", seed=6)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.masks, c.masks)


def test_probability_zero_changes_nothing_and_sizes_are_respected():
    images, aug = _augment("both", seed=0, prob=0.0)
    assert torch.equal(aug.images, images) and not aug.masks.any() and not aug.chosen.any()
    _, small = _augment("noise", seed=0, max_patches=1, min_size=0.1, max_size=0.1)
    side = round(0.1 * SIZE)
    assert torch.equal(small.masks.sum(dim=(1, 2, 3)), torch.full((8,), float(side * side)))


def test_texture_patches_come_from_the_sources():
    images = torch.zeros(2, 3, SIZE, SIZE)
    sources = torch.full((3, 3, SIZE, SIZE), 0.8)
    g = torch.Generator().manual_seed(0)
    aug = simulate_anomalies(
        images, kind="texture", prob=1.0, generator=g, sources=sources, min_opacity=1.0
    )
    inside = aug.masks.expand_as(aug.images).bool()
    assert torch.allclose(aug.images[inside], torch.tensor(0.8))


def test_bad_augmentation_arguments_are_rejected():
    with pytest.raises(ValueError, match="kind"):
        _augment("blur", seed=0)
    with pytest.raises(ValueError, match="min_size"):
        _augment("noise", seed=0, min_size=0.3, max_size=0.2)
