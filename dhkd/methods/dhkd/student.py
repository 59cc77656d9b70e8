"""The feed-forward student with dual-domain reconstruction blocks (parts 2, 4; README.md).

A dual-domain block is x + Spatial(x) + iFFT2(Freq(FFT2(x))). The variant switch keeps only one
branch ("spatial", "frequency"), both ("dual"), or neither ("none": a plain conv-norm-act stack of
the same depth, i.e. a conventional student without the reconstruction module).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Variant = Literal["none", "spatial", "frequency", "dual"]
FreqBranch = Literal["conv1x1", "global_filter"]


def _norm(channels: int) -> nn.Module:
    return nn.GroupNorm(1, channels)


class SpatialBranch(nn.Module):
    """conv3x3 -> norm -> GELU -> conv3x3, (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            _norm(channels),
            nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class FrequencyBranch(nn.Module):
    """Filters in the 2-D Fourier domain: rFFT2 -> filter -> irFFT2, (B, C, H, W) -> same.

    conv1x1: 1x1 convs over the stacked real/imaginary channels (mixes channels per frequency).
    global_filter: a learned complex weight per channel and frequency (a global circular conv).
    """

    def __init__(self, channels: int, height: int, width: int, kind: FreqBranch) -> None:
        super().__init__()
        self.kind = kind
        if kind == "conv1x1":
            self.mix = nn.Sequential(
                nn.Conv2d(2 * channels, 2 * channels, 1),
                nn.GELU(),
                nn.Conv2d(2 * channels, 2 * channels, 1),
            )
        else:
            weight = torch.zeros(channels, height, width // 2 + 1, 2)
            weight[..., 0] = 1.0
            self.weight = nn.Parameter(weight + 0.02 * torch.randn_like(weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        spec = torch.fft.rfft2(x.float(), norm="ortho")  # (B, C, H, W//2+1) complex
        if self.kind == "conv1x1":
            mixed = self.mix(torch.cat([spec.real, spec.imag], dim=1))
            real, imag = mixed.chunk(2, dim=1)
            spec = torch.complex(real, imag)
        else:
            spec = spec * torch.view_as_complex(self.weight)
        return torch.fft.irfft2(spec, s=(height, width), norm="ortho").to(x.dtype)


class DualDomainBlock(nn.Module):
    def __init__(self, channels: int, height: int, width: int, variant: Variant, freq: FreqBranch):
        super().__init__()
        self.variant = variant
        if variant == "none":
            self.plain = nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=1), _norm(channels), nn.GELU()
            )
        if variant in ("spatial", "dual"):
            self.spatial = SpatialBranch(channels)
        if variant in ("frequency", "dual"):
            self.frequency = FrequencyBranch(channels, height, width, freq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.variant == "none":
            return self.plain(x)
        out = x
        if self.variant in ("spatial", "dual"):
            out = out + self.spatial(x)
        if self.variant in ("frequency", "dual"):
            out = out + self.frequency(x)
        return out


class LevelStudent(nn.Module):
    """conv stem -> N dual-domain blocks -> conv head: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(
        self,
        channels: int,
        height: int,
        width: int,
        *,
        blocks: int = 2,
        variant: Variant = "dual",
        freq_branch: FreqBranch = "conv1x1",
        hidden_ratio: float = 1.0,
    ) -> None:
        super().__init__()
        hidden = max(8, round(channels * hidden_ratio))
        self.stem = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1), _norm(hidden), nn.GELU()
        )
        self.blocks = nn.Sequential(
            *(DualDomainBlock(hidden, height, width, variant, freq_branch) for _ in range(blocks))
        )
        self.head = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class CNNStudent(nn.Module):
    """Per-level students; lists of (B, C_l, H_l, W_l) in and out."""

    def __init__(self, shapes: list[tuple[int, int, int]], **kwargs) -> None:
        super().__init__()
        self.levels = nn.ModuleList(LevelStudent(c, h, w, **kwargs) for c, h, w in shapes)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [net(f) for net, f in zip(self.levels, feats, strict=True)]
