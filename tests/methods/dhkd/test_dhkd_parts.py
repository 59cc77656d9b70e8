"""DHKD's parts tested directly: what each must do, not only that a switch changes the output."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dhkd.methods.dhkd.losses import affinity_loss, affinity_matrix
from dhkd.methods.dhkd.student import FrequencyBranch
from dhkd.models.anomaly_map import score_maps
from dhkd.models.noise import add_feature_noise


def _noise(feats, seed=0, **kwargs):
    options = {"sigma": 0.5, "mask": "full", "prob": 1.0, "patch_size": 0.25, "patch_count": 1}
    options.update(kwargs)
    return add_feature_noise(feats, generator=torch.Generator().manual_seed(seed), **options)


def test_noise_has_the_asked_scale_relative_to_the_feature_rms():
    f = 3.0 * torch.randn(8, 16, 32, 32, generator=torch.Generator().manual_seed(1))
    (noisy,) = _noise([f], sigma=0.5)
    rms = float(f.pow(2).mean().sqrt())
    delta = noisy - f
    assert abs(float(delta.mean())) < 0.01 * rms
    assert float(delta.std()) == pytest.approx(0.5 * rms, rel=0.02)


def test_noise_leaves_its_input_alone_and_sigma_zero_is_the_identity():
    f = torch.randn(2, 4, 8, 8)
    before = f.clone()
    _noise([f])
    assert torch.equal(f, before)
    assert _noise([f], sigma=0.0)[0] is f


def test_patch_masks_cover_the_same_relative_place_on_every_level():
    coarse = torch.ones(4, 3, 8, 8)
    fine = torch.ones(4, 3, 32, 32)
    noisy_coarse, noisy_fine = _noise([coarse, fine], mask="patches", patch_size=0.25)
    hit_coarse = (noisy_coarse != coarse).any(dim=1).float()  # (B, 8, 8)
    hit_fine = (noisy_fine != fine).any(dim=1).float()  # (B, 32, 32)
    centres = []
    for hit in (hit_coarse, hit_fine):
        size = hit.shape[-1]
        grid = (torch.arange(size).float() + 0.5) / size
        area = hit.sum(dim=(1, 2))
        assert (area > 0).all() and (hit.mean(dim=(1, 2)) < 0.15).all()
        centres.append(
            torch.stack([(hit.sum(2) * grid).sum(1), (hit.sum(1) * grid).sum(1)], 1) / area[:, None]
        )
    assert torch.allclose(centres[0], centres[1], atol=1 / 8)  # within one coarse cell
    assert not torch.allclose(centres[1][0], centres[1][1], atol=1 / 8)  # samples differ


@pytest.mark.parametrize("placement", ["inside", "uniform"])
def test_patch_placement_decides_how_often_the_maps_edge_is_erased(placement):
    f = torch.ones(4000, 1, 16, 16)
    (noisy,) = _noise([f], mask="patches", patch_size=0.25, placement=placement)
    hit = (noisy != f).float().mean(dim=(0, 1))  # (16, 16): how often each cell is erased
    centre, edge, corner = (
        float(hit[6:10, 6:10].mean()),
        float(hit[0, 6:10].mean()),
        float(hit[0, 0]),
    )
    if placement == "uniform":  # a corner drawn in [-1/4, 1]^2 covers a cell 1/25 of the time
        assert edge == pytest.approx(centre, rel=0.15) and corner == pytest.approx(centre, rel=0.3)
        assert centre == pytest.approx((0.25 / 1.25) ** 2, rel=0.1)
    else:  # per axis a central cell is covered 1/3 of the time, an edge cell 1/24
        assert edge < centre / 5 and corner < centre / 20


def test_replace_mode_erases_the_patch_and_keeps_the_rest():
    f = 5.0 + torch.randn(64, 8, 32, 32, generator=torch.Generator().manual_seed(2))
    (added,) = _noise([f], seed=3, mask="patches", sigma=1.0)
    (replaced,) = _noise([f], seed=3, mask="patches", sigma=1.0, mode="replace")
    inside = (added != f).any(dim=1, keepdim=True).expand_as(f)
    assert 0 < float(inside.float().mean()) < 0.15
    assert torch.equal(replaced[~inside], f[~inside])
    rms = float(f.pow(2).mean().sqrt())
    # inside the patch nothing of f (mean 5) is left: the same eps as "add" drew, alone
    assert torch.allclose(replaced[inside], (added - f)[inside], atol=1e-5)
    assert abs(float(replaced[inside].mean())) < 0.05 * rms


def test_noise_probability_is_the_fraction_of_noised_samples():
    f = torch.ones(2000, 1, 2, 2)
    (noisy,) = _noise([f], prob=0.3)
    noised = (noisy != f).flatten(1).any(dim=1).float().mean()
    assert float(noised) == pytest.approx(0.3, abs=0.04)


def test_affinity_matrix_known_values():
    x = torch.zeros(1, 2, 1, 2)
    x[0, :, 0, 0] = torch.tensor([1.0, 0.0])
    x[0, :, 0, 1] = torch.tensor([1.0, 1.0])
    cos = affinity_matrix(x, pool=32, form="cosine")[0]
    dot = affinity_matrix(x, pool=32, form="dot")[0]
    s = 1 / math.sqrt(2)
    assert torch.allclose(cos, torch.tensor([[1.0, s], [s, 1.0]]), atol=1e-6)
    assert torch.allclose(dot, torch.tensor([[0.5, 0.5], [0.5, 1.0]]), atol=1e-6)


def test_affinity_loss_is_zero_for_identical_inputs_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 8, 6, 6, generator=g), torch.randn(2, 8, 6, 6, generator=g)
    assert float(affinity_loss(a, a, pool=32, form="cosine")) == pytest.approx(0, abs=1e-12)
    assert affinity_loss(a, b, pool=32, form="cosine") > 0


@pytest.mark.parametrize("form", ["cosine", "dot"])
@pytest.mark.parametrize("shape", [(3, 8, 12, 12), (3, 40, 4, 4), (2, 6, 40, 40)])
@pytest.mark.parametrize("gap", [1.0, 1e-3])
def test_affinity_loss_equals_the_mse_of_the_affinity_matrices(form, shape, gap):
    """Computed from (C, C) products where C < P; the same value and gradient as the mean
    squared difference of the (P, P) matrices, also when the student is close to the teacher."""
    g = torch.Generator().manual_seed(0)
    target = torch.randn(*shape, generator=g)
    student = (target + gap * torch.randn(*shape, generator=g)).requires_grad_(True)
    explicit = F.mse_loss(
        affinity_matrix(student, pool=32, form=form), affinity_matrix(target, pool=32, form=form)
    )
    (want,) = torch.autograd.grad(explicit, student)
    loss = affinity_loss(student, target, pool=32, form=form)
    (got,) = torch.autograd.grad(loss, student)
    assert loss.dtype == torch.float32
    assert float(loss.detach()) == pytest.approx(float(explicit.detach()), rel=1e-4)
    assert torch.allclose(got, want, rtol=1e-3, atol=1e-3 * float(want.abs().max()))


def test_cosine_affinity_ignores_per_position_scale_and_a_shared_channel_rotation():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 8, 6, 6, generator=g), torch.randn(2, 8, 6, 6, generator=g)
    scale = torch.rand(2, 1, 6, 6, generator=g) + 0.5
    rotation, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
    rotated = torch.einsum("dc,bchw->bdhw", rotation, a)

    def loss(x):
        return float(affinity_loss(x, b, pool=32, form="cosine"))

    assert loss(a * scale) == pytest.approx(loss(a), rel=1e-5)
    assert loss(rotated) == pytest.approx(loss(a), rel=1e-5)


def _wave(frequency: int, size: int = 16) -> torch.Tensor:
    xs = torch.arange(size).float()
    return torch.cos(2 * math.pi * frequency * xs / size).expand(1, 1, size, size).clone()


def test_frequency_branch_filters_by_frequency():
    branch = FrequencyBranch(1, 16, 16, "global_filter")
    with torch.no_grad():
        branch.weight.zero_()
        branch.weight[0, :, :3, 0] = 1.0  # pass horizontal frequencies 0-2, block the rest
    low, high = _wave(1), _wave(5)
    with torch.no_grad():
        assert torch.allclose(branch(low), low, atol=1e-5)
        assert branch(high).abs().max() < 1e-5


def test_conv1x1_frequency_branch_acts_on_each_frequency_apart():
    torch.manual_seed(0)
    branch = FrequencyBranch(1, 16, 16, "conv1x1").eval()
    with torch.no_grad():
        added = branch(_wave(1) + _wave(5)) - branch(_wave(1))
    spectrum = torch.fft.rfft2(added[0, 0]).abs()
    assert spectrum[0, 5] > 1e-3  # the branch responds to the content added at frequency 5
    spectrum[0, 5] = 0
    assert spectrum.max() < 1e-4  # and only there


@pytest.mark.parametrize("fusion", ["sum", "product"])
def test_anomaly_map_peaks_where_the_discrepancy_is(fusion):
    coarse = torch.full((1, 8, 8), 0.1)
    fine = torch.full((1, 16, 16), 0.1)
    coarse[0, 2, 5] = 2.0  # the same spot on both levels: rows 20-27, columns 40-47 at 64 px
    fine[0, 5, 11] = 2.0
    batch = score_maps([coarse, fine], 64, fusion=fusion, smoothing_sigma=2.0)
    maps = batch.anomaly_map
    row, col = divmod(int(maps[0].argmax()), 64)
    assert 19 <= row <= 28 and 39 <= col <= 48
    assert float(batch.pred_score[0]) == pytest.approx(float(maps.max()))


@pytest.mark.parametrize("fusion", ["sum", "product"])
def test_pool_levels_scores_each_level_then_fuses_the_scores(fusion):
    torch.manual_seed(0)
    coarse, fine = torch.rand(3, 8, 8) + 0.1, torch.rand(3, 16, 16) + 0.1
    args = {"fusion": fusion, "smoothing_sigma": 1.0, "pooling": "topk", "topk_fraction": 0.05}
    fused = score_maps([coarse, fine], 32, **args)
    levels = score_maps([coarse, fine], 32, **args, pool="levels")
    assert torch.equal(levels.anomaly_map, fused.anomaly_map)  # the maps do not change
    per_level = [score_maps([m], 32, **args).pred_score for m in (coarse, fine)]
    want = per_level[0] + per_level[1] if fusion == "sum" else per_level[0] * per_level[1]
    torch.testing.assert_close(levels.pred_score, want, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(levels.pred_score, fused.pred_score)
