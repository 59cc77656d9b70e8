"""Anomaly maps and image scores from per-level maps, shared by every method (docs/design.md).

A method turns features into per-level maps (B, h_l, w_l) where larger means more anomalous;
`score_maps` upsamples them to the input size, fuses them (sum | product), smooths them with a
Gaussian and pools each map to an image score: the fused map's pixels (pool `fused`), or each
level's smoothed map on its own, the level scores then fused as the maps are (pool `levels`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F


class InferenceBatch(NamedTuple):
    pred_score: torch.Tensor  # (B,)
    anomaly_map: torch.Tensor  # (B, H, W) at the input image size


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of (B, H, W) maps, kernel radius 4 sigma, reflect padding."""
    if sigma <= 0:
        return maps
    radius = max(1, math.ceil(4 * sigma))
    radius = min(radius, maps.shape[-1] - 1, maps.shape[-2] - 1)
    coords = torch.arange(-radius, radius + 1, device=maps.device, dtype=maps.dtype)
    kernel = torch.exp(-0.5 * (coords / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = maps.unsqueeze(1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return x.squeeze(1)


def upsample_levels(level_maps: list[torch.Tensor], size: int) -> list[torch.Tensor]:
    """Per-level (B, h_l, w_l) maps -> (B, size, size) each, bilinear."""
    return [
        F.interpolate(m.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False)[:, 0]
        for m in level_maps
    ]


def _fuse(maps: list[torch.Tensor], fusion: str) -> torch.Tensor:
    if fusion == "sum":
        return torch.stack(maps).sum(0)
    return torch.stack(maps).clamp_min(1e-12).log().sum(0).exp()


def image_scores(maps: torch.Tensor, pooling: str, topk_fraction: float = 0.01) -> torch.Tensor:
    """(B, H, W) -> (B,) by max, mean, or mean of the top-k fraction of pixels."""
    flat = maps.flatten(1)
    if pooling == "max":
        return flat.max(dim=1).values
    if pooling == "mean":
        return flat.mean(dim=1)
    k = max(1, round(flat.shape[1] * topk_fraction))
    return flat.topk(k, dim=1).values.mean(dim=1)


def score_maps(
    level_maps: list[torch.Tensor],
    size: int,
    *,
    fusion: str = "sum",
    smoothing_sigma: float = 4.0,
    pooling: str = "max",
    topk_fraction: float = 0.01,
    pool: str = "fused",
) -> InferenceBatch:
    """Per-level (B, h_l, w_l) maps -> fused, smoothed (B, size, size) maps and (B,) scores,
    pooled from the fused map (pool `fused`) or from each level's smoothed map, the level
    scores fused like the maps (pool `levels`); the maps are the same either way."""
    ups = upsample_levels(level_maps, size)
    maps = gaussian_blur(_fuse(ups, fusion), smoothing_sigma)
    if pool == "fused":
        return InferenceBatch(image_scores(maps, pooling, topk_fraction), maps)
    levels = [
        image_scores(gaussian_blur(m, smoothing_sigma), pooling, topk_fraction).unsqueeze(1)
        for m in ups
    ]
    return InferenceBatch(_fuse(levels, fusion)[:, 0], maps)
