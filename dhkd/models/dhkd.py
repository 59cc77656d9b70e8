"""DHKD on frozen-backbone features: flow teacher, denoising student, affinity loss, anomaly map.

The model works on per-level backbone features [(B, C_l, H_l, W_l)] so that features can be
computed once per dataset and reused by every trial. Images -> features is the FeatureExtractor's
job (backbone.py).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from dhkd.config import TrainConfig
from dhkd.models.anomaly_map import fuse_maps, image_scores, level_distance
from dhkd.models.flow import FlowTeacher, flow_nll
from dhkd.models.losses import student_loss
from dhkd.models.noise import add_feature_noise
from dhkd.models.student import CNNStudent


class InferenceBatch(NamedTuple):
    pred_score: torch.Tensor  # (B,)
    anomaly_map: torch.Tensor  # (B, H, W) at the input image size


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


class DHKDModel(nn.Module):
    """Teacher flow + student per level. shapes: [(C_l, H_l, W_l)] of the backbone levels."""

    def __init__(
        self,
        shapes: list[tuple[int, int, int]],
        cfg: TrainConfig,
        stats: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.norm = FeatureNorm(cfg.backbone.feature_norm, stats)
        t = cfg.teacher
        flow_args = {"clamp": t.clamp, "hidden_ratio": t.hidden_ratio, "pos_enc": t.pos_enc}
        flow_args["pos_enc_dim"] = t.pos_enc_dim
        self.teacher = FlowTeacher(shapes, depth=t.depth, **flow_args)
        s = cfg.student
        if s.kind == "flow":
            self.student: nn.Module = FlowTeacher(shapes, depth=s.flow_depth, **flow_args)
        else:
            self.student = CNNStudent(
                shapes,
                blocks=s.blocks,
                variant=s.variant,
                freq_branch=s.freq_branch,
                hidden_ratio=s.hidden_ratio,
            )

    def _student(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.cfg.student.kind == "flow":
            return self.student(feats)[0]
        return self.student(feats)

    @torch.no_grad()
    def _targets(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [z.float() for z in self.teacher(feats)[0]]

    def teacher_loss(self, raw: list[torch.Tensor]) -> torch.Tensor:
        """Flow NLL per dimension, averaged over levels (stage 1)."""
        zs, jacs = self.teacher(self.norm(raw))
        return sum(flow_nll(z, j) for z, j in zip(zs, jacs, strict=True)) / len(zs)

    def student_loss(self, raw: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """Stage 2: the student sees noisy features and must output Teacher(clean features)."""
        clean = self.norm(raw)
        targets = self._targets(clean)
        n = self.cfg.noise
        noisy = add_feature_noise(
            clean,
            sigma=n.sigma,
            mask=n.mask,
            prob=n.prob,
            patch_size=n.patch_size,
            patch_count=n.patch_count,
            generator=generator,
        )
        loss = self.cfg.loss
        return student_loss(
            self._student(noisy),
            targets,
            kd=loss.kd,
            affinity_weight=loss.affinity_weight,
            affinity_pool=loss.affinity_pool,
            affinity_form=loss.affinity_form,
        )

    @torch.no_grad()
    def forward(self, raw: list[torch.Tensor], image_size: int) -> InferenceBatch:
        """Test time, no noise: per-level ||S(f) - T(f)||^2 -> fused, smoothed map -> score."""
        clean = self.norm(raw)
        targets = self._targets(clean)
        students = self._student(clean)
        level_maps = [level_distance(s, t) for s, t in zip(students, targets, strict=True)]
        sc = self.cfg.score
        maps = fuse_maps(level_maps, image_size, sc.fusion, sc.smoothing_sigma)
        return InferenceBatch(image_scores(maps, sc.pooling, sc.topk_fraction), maps)
