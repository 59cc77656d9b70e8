"""A PatchCore-style memory bank on frozen-backbone features (Roth et al., CVPR 2022).

Patch features: each level is normalised (FeatureNorm, backbone.feature_norm), averaged over a
local `aggregate` x `aggregate` neighbourhood, upsampled to the finest level's grid and the levels
are concatenated: (B, sum C_l, H, W) -> one C-dimensional vector per position. The bank is a
greedy k-center coreset of the train patches (distances in a random projection, for speed); a
test patch's score is its mean Euclidean distance to the k nearest bank patches, computed in
chunks so that at most `chunk_elements` distances are held at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dhkd.models.norm import FeatureNorm


def greedy_coreset(
    points: torch.Tensor, size: int, projection_dim: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-center greedy: indices (size,) of rows of points (N, C) and each row's distance to them.

    Rows are first projected to projection_dim dimensions by a Gaussian random matrix (when
    C is larger); the first center is drawn with `generator`, then the row farthest from every
    chosen center is added until `size` are chosen. Returns (indices, distances (N,)).
    """
    x = points
    if x.shape[1] > projection_dim:
        proj = torch.randn(x.shape[1], projection_dim, generator=generator) / projection_dim**0.5
        x = x @ proj.to(x.device)
    sq = x.pow(2).sum(1)
    chosen = torch.empty(size, dtype=torch.long)
    chosen[0] = int(torch.randint(len(x), (1,), generator=generator))
    nearest = torch.full_like(sq, float("inf"))
    dist = torch.empty_like(sq)
    for i in range(size):
        if i > 0:
            chosen[i] = int(nearest.argmax())
        c = x[chosen[i]]
        torch.mv(x, c, out=dist)  # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2, in place
        dist.mul_(-2).add_(sq).add_(sq[chosen[i]])
        torch.minimum(nearest, dist, out=nearest)
    nearest.clamp_(min=0)
    return chosen, nearest.sqrt()


def knn_distance(
    queries: torch.Tensor, bank: torch.Tensor, k: int, chunk_elements: int
) -> torch.Tensor:
    """(Q, C) queries, (M, C) bank -> (Q,) mean distance to the k nearest bank rows."""
    k = min(k, len(bank))
    rows = max(1, chunk_elements // max(1, len(bank)))
    out = []
    for start in range(0, len(queries), rows):
        d = torch.cdist(queries[start : start + rows], bank)
        out.append(d.topk(k, dim=1, largest=False).values.mean(dim=1))
    return torch.cat(out)


class KnnModel(nn.Module):
    """Feature normalisation + the memory bank (buffer `bank`, (M, C)); see the module docstring.

    shapes: [(C_l, H_l, W_l)] of the backbone levels; stats: train-set channel statistics.
    """

    def __init__(
        self,
        shapes: list[tuple[int, int, int]],
        stats: list[tuple[torch.Tensor, torch.Tensor]],
        *,
        feature_norm: str = "train_stats",
        k: int = 1,
        aggregate: int = 3,
        chunk_elements: int = 2**24,
    ) -> None:
        super().__init__()
        self.norm = FeatureNorm(feature_norm, stats)
        self.k, self.aggregate, self.chunk_elements = k, aggregate, chunk_elements
        self.grid = max((h, w) for _, h, w in shapes)
        self.register_buffer("bank", torch.zeros(0, sum(c for c, _, _ in shapes)))

    def patches(self, raw: list[torch.Tensor]) -> torch.Tensor:
        """Per-level features [(B, C_l, H_l, W_l)] -> patch features (B, C, H, W) on the grid."""
        out = []
        for f in self.norm(raw):
            if self.aggregate > 1:
                pad = self.aggregate // 2
                f = F.avg_pool2d(f, self.aggregate, 1, pad, count_include_pad=False)
            if f.shape[-2:] != self.grid:
                f = F.interpolate(f, size=self.grid, mode="bilinear", align_corners=False)
            out.append(f)
        return torch.cat(out, dim=1)

    def set_bank(self, bank: torch.Tensor) -> None:
        self.bank = bank.detach().clone()

    @torch.no_grad()
    def forward(self, raw: list[torch.Tensor]) -> list[torch.Tensor]:
        """Test time: one (B, H, W) map of distances to the bank, on the finest level's grid."""
        if len(self.bank) == 0:
            raise RuntimeError("the memory bank is empty: run the fit stage first")
        p = self.patches(raw)
        b, c, h, w = p.shape
        queries = p.permute(0, 2, 3, 1).reshape(-1, c)
        return [knn_distance(queries, self.bank, self.k, self.chunk_elements).view(b, h, w)]
