"""Bidirectional knowledge distillation (BiKD; Wang et al., Neural Computing and Applications 2024).

Only the abstract is public: a classification-pretrained teacher, forward distillation (teacher ->
student) plus backward distillation (student -> teacher side), and an anomaly-simulating
augmentation. The architecture here is ours; every choice is a `bikd.*` switch (config.py;
unit.build_bikd_model turns it into this module's keyword arguments):

- Teacher: the frozen ImageNet backbone (models/backbone.py), features of backbone.levels,
  normalised per level (models/norm.py FeatureNorm, backbone.feature_norm).
- Forward path (`bikd.forward_weight`; off for `bikd.direction: backward`): `ForwardStudent`,
  a light CNN trained from scratch that maps the clean image to the teacher's per-level features
  (1 - cosine per position, plus `bikd.forward_mse_weight` x MSE). It only ever sees normal
  images, so it fails to imitate the teacher on anomalies (STPM-style discrepancy).
- Backward path (`bikd.backward_weight`; off for `bikd.direction: forward`): `ReverseDistiller`,
  reverse distillation (RD4AD style): `Bottleneck` fuses the teacher's levels into a compact
  embedding of width `bikd.bottleneck_ratio` x sum(C_l) at the coarsest level's resolution /
  `bikd.bottleneck_stride`, and `Decoder` reconstructs every level from it. With augmentation
  the bottleneck sees the teacher's features of the augmented image and the decoder must
  reproduce those of the clean one (1 - cosine per position).
- Coupling (`bikd.coupling_weight`, 0 = off): the two paths also learn from each other, a
  reciprocal exchange on normal images: the forward student's output is pulled towards the
  reverse distiller's reconstruction and vice versa (1 - cosine per position, each side's
  target detached), so each path is regularised by what the other learned.
- Anomaly map: per level, forward_weight x (1 - cos(S, T)) + backward_weight x (1 - cos(D, T)),
  upsampled, fused, smoothed and pooled by the shared models/anomaly_map.py.
A path that is off (weight 0 or excluded by `bikd.direction`) is not built (no parameters).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dhkd.models.backbone import IMAGENET_MEAN, IMAGENET_STD
from dhkd.models.norm import FeatureNorm

Shapes = list[tuple[int, int, int]]


def _conv_bn(c_in: int, c_out: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, padding=(kernel - 1) // 2 if kernel % 2 else 0),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _resize_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if x.shape[-2:] == (height, width):
        return x
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) pair -> (B, h, w): 1 - cosine similarity over channels."""
    return 1 - F.cosine_similarity(a.float(), b.float(), dim=1, eps=1e-6)


def coupling_loss(student: list[torch.Tensor], reconstructed: list[torch.Tensor]) -> torch.Tensor:
    """Reciprocal distillation between the two paths: per level, the mean over positions of
    (1 - cos(S, D.detach())) + (1 - cos(D, S.detach())), halved, summed over levels."""
    total = student[0].new_zeros((), dtype=torch.float32)
    for s, d in zip(student, reconstructed, strict=True):
        pull_s = cosine_distance(s, d.detach()).mean()
        pull_d = cosine_distance(d, s.detach()).mean()
        total = total + 0.5 * (pull_s + pull_d)
    return total


class ForwardStudent(nn.Module):
    """Light CNN from scratch: images (B, 3, S, S) in [0, 1] -> per level (B, C_l, H_l, W_l).

    A 4x4 stride-4 patchify stem (stride 4; plus a 3x3 conv only when level 1 is requested),
    then per further level a stride-2 conv and a 3x3 conv (widths width, 2 width, 4 width,
    4 width), and a 1x1 head per requested level. Outputs are resized to the teacher's (H_l, W_l)
    if the strides do not divide the input exactly.
    """

    def __init__(self, shapes: Shapes, levels: tuple[int, ...], width: int = 32) -> None:
        super().__init__()
        self.levels, self.shapes = tuple(levels), list(shapes)
        widths = [width * min(2**i, 4) for i in range(max(levels))]
        stem = [_conv_bn(3, widths[0], stride=4, kernel=4)]
        if 1 in levels:
            stem.append(_conv_bn(widths[0], widths[0]))
        stages = [nn.Sequential(*stem)]
        for i in range(1, max(levels)):
            stages.append(
                nn.Sequential(
                    _conv_bn(widths[i - 1], widths[i], stride=2), _conv_bn(widths[i], widths[i])
                )
            )
        self.stages = nn.ModuleList(stages)
        self.heads = nn.ModuleDict(
            {
                str(lv): nn.Conv2d(widths[lv - 1], c, 1)
                for lv, (c, _, _) in zip(levels, shapes, strict=True)
            }
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images - self.mean) / self.std
        out: dict[int, torch.Tensor] = {}
        for lv, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if lv in self.levels:
                out[lv] = self.heads[str(lv)](x)
        return [
            _resize_to(out[lv], h, w)
            for lv, (_, h, w) in zip(self.levels, self.shapes, strict=True)
        ]


class Bottleneck(nn.Module):
    """Per-level features [(B, C_l, H_l, W_l)] -> embedding (B, D, H_c / stride, W_c / stride).

    Each level is brought to the coarsest level's resolution (H_c, W_c) by stride-2 convs (or
    average pooling when the ratio is not a power of two), the levels are concatenated and fused
    by a 1x1 conv to D = max(8, round(ratio * sum C_l)) channels, then an optional stride-2 conv.
    """

    def __init__(self, shapes: Shapes, ratio: float, stride: int = 2) -> None:
        super().__init__()
        coarse = min(h for _, h, _ in shapes)
        self.size = (coarse, min(w for _, _, w in shapes))
        self.align = nn.ModuleList()
        for c, h, _ in shapes:
            ratio_h = h // coarse
            n = int(math.log2(ratio_h)) if h % coarse == 0 and ratio_h & (ratio_h - 1) == 0 else 0
            self.align.append(nn.Sequential(*[_conv_bn(c, c, stride=2) for _ in range(n)]))
        self.width = max(8, round(ratio * sum(c for c, _, _ in shapes)))
        layers = [_conv_bn(sum(c for c, _, _ in shapes), self.width, kernel=1)]
        self.out_size = self.size
        if stride == 2:
            layers.append(_conv_bn(self.width, self.width, stride=2))
            self.out_size = (math.ceil(self.size[0] / 2), math.ceil(self.size[1] / 2))
        layers.append(_conv_bn(self.width, self.width))
        self.fuse = nn.Sequential(*layers)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        aligned = [
            F.adaptive_avg_pool2d(a(f), self.size) for a, f in zip(self.align, feats, strict=True)
        ]
        return self.fuse(torch.cat(aligned, dim=1))


class _Up(nn.Module):
    """(B, c_in, h, w) -> (B, c_out, H, W): a 2x2 stride-2 transposed conv when H = 2h and
    W = 2w, else bilinear resizing and a 1x1 conv; then BN and ReLU."""

    def __init__(self, c_in: int, c_out: int, size_in: tuple[int, int], size_out: tuple[int, int]):
        super().__init__()
        self.size = size_out
        self.double = size_out == (2 * size_in[0], 2 * size_in[1])
        conv = (
            nn.ConvTranspose2d(c_in, c_out, 2, stride=2)
            if self.double
            else nn.Conv2d(c_in, c_out, 1)
        )
        self.body = nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.double:
            x = _resize_to(x, *self.size)
        return _resize_to(self.body(x), *self.size)


class Decoder(nn.Module):
    """Embedding (B, D, h, w) -> per level (B, C_l, H_l, W_l), coarsest level decoded first.

    Each step upsamples to the level's size (`_Up`, width C_l), applies a 3x3 conv-BN-ReLU and a
    linear 1x1 head; the step's hidden map feeds the next finer level.
    """

    def __init__(self, shapes: Shapes, width: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.shapes = list(shapes)
        self.order = sorted(range(len(shapes)), key=lambda i: shapes[i][1])  # coarse -> fine
        self.blocks, self.heads = nn.ModuleList(), nn.ModuleList()
        c_in = width
        for i in self.order:
            c, h, w = shapes[i]
            self.blocks.append(nn.Sequential(_Up(c_in, c, size, (h, w)), _conv_bn(c, c)))
            self.heads.append(nn.Conv2d(c, c, 1))
            c_in, size = c, (h, w)

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        out: list[torch.Tensor | None] = [None] * len(self.shapes)
        x = z
        for i, block, head in zip(self.order, self.blocks, self.heads, strict=True):
            x = block(x)
            out[i] = head(x)
        return out  # type: ignore[return-value]


class ReverseDistiller(nn.Module):
    """Backward path: Bottleneck then Decoder; features in, reconstructed features out."""

    def __init__(self, shapes: Shapes, ratio: float, stride: int) -> None:
        super().__init__()
        self.bottleneck = Bottleneck(shapes, ratio, stride)
        self.decoder = Decoder(shapes, self.bottleneck.width, self.bottleneck.out_size)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.decoder(self.bottleneck(feats))


class BiKDModel(nn.Module):
    """Frozen-teacher features + forward student + reverse distiller; see the module docstring.

    shapes: [(C_l, H_l, W_l)] of the backbone levels; stats: train-set channel statistics for
    FeatureNorm. Inputs: images (B, 3, S, S) in [0, 1] for the forward student and the teacher's
    raw features [(B, C_l, H_l, W_l)] of the same images.
    """

    def __init__(
        self,
        shapes: Shapes,
        stats: list[tuple[torch.Tensor, torch.Tensor]],
        *,
        levels: tuple[int, ...],
        feature_norm: str = "train_stats",
        forward_weight: float = 1.0,
        backward_weight: float = 1.0,
        forward_width: int = 32,
        forward_mse_weight: float = 0.0,
        coupling_weight: float = 0.0,
        bottleneck_ratio: float = 0.5,
        bottleneck_stride: int = 2,
    ) -> None:
        """forward_weight / backward_weight: the weights in use (0 = the path is not built);
        coupling_weight > 0 needs both paths."""
        super().__init__()
        if coupling_weight > 0 and (forward_weight <= 0 or backward_weight <= 0):
            raise ValueError("coupling_weight > 0 needs both the forward and the backward path")
        self.forward_weight, self.backward_weight = forward_weight, backward_weight
        self.forward_mse_weight = forward_mse_weight
        self.coupling_weight = coupling_weight
        self.norm = FeatureNorm(feature_norm, stats)
        self.student = (
            ForwardStudent(shapes, tuple(sorted(levels)), forward_width)
            if forward_weight > 0
            else None
        )
        self.reverse = (
            ReverseDistiller(shapes, bottleneck_ratio, bottleneck_stride)
            if backward_weight > 0
            else None
        )

    def loss(
        self,
        images: torch.Tensor,
        clean_raw: list[torch.Tensor],
        augmented_raw: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss: forward_weight * L_fwd + backward_weight * L_bwd + coupling_weight *
        L_couple; (total, parts).

        images: clean (B, 3, S, S); clean_raw: teacher features of `images` (the targets of both
        paths); augmented_raw: teacher features of the augmented images that the backward path
        sees instead (None = no augmentation). L_couple averages, over levels, (1 - cos(S, D'))
        and (1 - cos(D, S')), S the forward student's output, D the reconstruction, ' detached.
        """
        targets = [t.float() for t in self.norm(clean_raw)]
        total = targets[0].new_zeros(())
        parts: dict[str, float] = {}
        student = self.student(images) if self.student is not None else None
        if student is not None:
            fwd = targets[0].new_zeros(())
            for s, t in zip(student, targets, strict=True):
                fwd = fwd + cosine_distance(s, t).mean()
                if self.forward_mse_weight > 0:
                    fwd = fwd + self.forward_mse_weight * F.mse_loss(s.float(), t)
            total = total + self.forward_weight * fwd
            parts["forward"] = float(fwd.detach())
        reconstructed = None
        if self.reverse is not None:
            seen = targets if augmented_raw is None else self.norm(augmented_raw)
            reconstructed = self.reverse(seen)
            bwd = sum(
                cosine_distance(r, t).mean() for r, t in zip(reconstructed, targets, strict=True)
            )
            total = total + self.backward_weight * bwd
            parts["backward"] = float(bwd.detach())
        if self.coupling_weight > 0 and student is not None and reconstructed is not None:
            couple = coupling_loss(student, reconstructed)
            total = total + self.coupling_weight * couple
            parts["coupling"] = float(couple.detach())
        return total, parts

    def level_maps(self, images: torch.Tensor, raw: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per level (B, H_l, W_l): the weighted forward + backward cosine distances."""
        feats = self.norm(raw)
        maps = [f.new_zeros(f.shape[0], *f.shape[-2:]).float() for f in feats]
        if self.student is not None:
            for i, (s, t) in enumerate(zip(self.student(images), feats, strict=True)):
                maps[i] = maps[i] + self.forward_weight * cosine_distance(s, t)
        if self.reverse is not None:
            for i, (r, t) in enumerate(zip(self.reverse(feats), feats, strict=True)):
                maps[i] = maps[i] + self.backward_weight * cosine_distance(r, t)
        return maps

    @torch.no_grad()
    def forward(self, images: torch.Tensor, raw: list[torch.Tensor]) -> list[torch.Tensor]:
        """Test time: per level (B, H_l, W_l) anomaly maps (see level_maps)."""
        return self.level_maps(images, raw)
