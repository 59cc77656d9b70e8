"""Per-level feature normalisation shared by every method (docs/design.md)."""

from __future__ import annotations

import torch
from torch import nn


class FeatureNorm(nn.Module):
    """Per-level normalisation: train-set channel statistics, per-position LayerNorm, or none."""

    def __init__(self, kind: str, stats: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        super().__init__()
        self.kind = kind
        for i, (mean, std) in enumerate(stats):
            self.register_buffer(f"mean{i}", mean.view(1, -1, 1, 1).clone())
            self.register_buffer(f"std{i}", std.view(1, -1, 1, 1).clone())

    @staticmethod
    def statistics(feats: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Channel mean and std of each level over (N, H, W): [(C_l,), (C_l,)]."""
        return [(f.mean(dim=(0, 2, 3)), f.std(dim=(0, 2, 3)).clamp_min(1e-6)) for f in feats]

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.kind == "none":
            return feats
        out = []
        for i, f in enumerate(feats):
            if self.kind == "train_stats":
                out.append((f - getattr(self, f"mean{i}")) / getattr(self, f"std{i}"))
            else:
                mu = f.mean(dim=1, keepdim=True)
                out.append((f - mu) / f.var(dim=1, keepdim=True, unbiased=False).add(1e-5).sqrt())
        return out
