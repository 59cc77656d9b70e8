"""Normalizing flows on feature maps: the DHKD teacher (part 1, README.md) and the flow student of
the heterogeneity ablation. Built from FrEIA SequenceINN + AllInOneBlock couplings."""

from __future__ import annotations

import math
from collections.abc import Callable

import FrEIA.framework as Ff
import FrEIA.modules as Fm
import torch
from torch import nn


def positional_encoding(dim: int, height: int, width: int) -> torch.Tensor:
    """2-D sinusoidal encoding, (dim, H, W); half the channels encode rows, half columns."""
    if dim % 4:
        dim = dim + (4 - dim % 4)
    quarter = dim // 4
    freqs = torch.exp(torch.arange(quarter) * (-math.log(1e4) / max(quarter, 1)))
    ys = torch.arange(height).float()[:, None] * freqs[None]  # (H, q)
    xs = torch.arange(width).float()[:, None] * freqs[None]  # (W, q)
    enc = torch.zeros(dim, height, width)
    enc[0:quarter] = torch.sin(ys).T[:, :, None].expand(-1, -1, width)
    enc[quarter : 2 * quarter] = torch.cos(ys).T[:, :, None].expand(-1, -1, width)
    enc[2 * quarter : 3 * quarter] = torch.sin(xs).T[:, None, :].expand(-1, height, -1)
    enc[3 * quarter :] = torch.cos(xs).T[:, None, :].expand(-1, height, -1)
    return enc


def conv_subnet_factory(hidden: int, kernel: int) -> Callable[[int, int], nn.Module]:
    """FrEIA subnet constructor: conv(k) -> ReLU -> conv(k); last conv starts at zero (identity)."""

    def make(c_in: int, c_out: int) -> nn.Module:
        last = nn.Conv2d(hidden, c_out, kernel, padding=kernel // 2)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        return nn.Sequential(nn.Conv2d(c_in, hidden, kernel, padding=kernel // 2), nn.ReLU(), last)

    return make


class FeatureFlow(nn.Module):
    """One invertible flow per feature level: f (B, C, H, W) -> z (B, C, H, W), log|det J| (B,).

    K AllInOneBlock couplings with conv subnets whose kernels alternate 3 / 1 (README.md);
    optionally conditioned on a fixed positional encoding.
    """

    def __init__(
        self,
        channels: int,
        height: int,
        width: int,
        *,
        depth: int = 8,
        clamp: float = 2.0,
        hidden_ratio: float = 1.0,
        pos_enc: bool = False,
        pos_enc_dim: int = 16,
    ) -> None:
        super().__init__()
        self.pos_enc = pos_enc
        cond_shape = None
        if pos_enc:
            enc = positional_encoding(pos_enc_dim, height, width)
            self.register_buffer("encoding", enc, persistent=False)
            cond_shape = tuple(enc.shape)
        hidden = max(8, round(channels * hidden_ratio))
        self.inn = Ff.SequenceINN(channels, height, width)
        for k in range(depth):
            kwargs = {"cond": 0, "cond_shape": cond_shape} if pos_enc else {}
            self.inn.append(
                Fm.AllInOneBlock,
                subnet_constructor=conv_subnet_factory(hidden, 3 if k % 2 == 0 else 1),
                affine_clamping=clamp,
                permute_soft=False,
                **kwargs,
            )

    def _cond(self, batch: int) -> list[torch.Tensor] | None:
        if not self.pos_enc:
            return None
        return [self.encoding.unsqueeze(0).expand(batch, -1, -1, -1)]

    def forward(self, x: torch.Tensor, rev: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        cond = self._cond(x.shape[0])
        if cond is None:
            return self.inn(x, rev=rev)
        return self.inn(x, c=cond, rev=rev)


def flow_nll(z: torch.Tensor, log_jac_det: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood per dimension: mean_b (0.5 ||z_b||^2 - log|det J_b|) / (C H W)."""
    dims = z[0].numel()
    return (0.5 * z.pow(2).flatten(1).sum(1) - log_jac_det).mean() / dims


class FlowTeacher(nn.Module):
    """Per-level flows; input and output are lists of (B, C_l, H_l, W_l)."""

    def __init__(self, shapes: list[tuple[int, int, int]], **flow_kwargs) -> None:
        super().__init__()
        self.flows = nn.ModuleList(FeatureFlow(c, h, w, **flow_kwargs) for c, h, w in shapes)

    def forward(self, feats: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        zs, jacs = zip(*(flow(f) for flow, f in zip(self.flows, feats, strict=True)), strict=True)
        return list(zs), list(jacs)
