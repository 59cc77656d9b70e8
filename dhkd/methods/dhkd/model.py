"""DHKD on frozen-backbone features: flow teacher, denoising student, affinity loss, level maps.

The model works on per-level backbone features [(B, C_l, H_l, W_l)] so that features can be
computed once per dataset and reused by every trial. Images -> features is the FeatureExtractor's
job (models/backbone.py); level maps -> anomaly maps and scores is models/anomaly_map.py's.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from dhkd.methods.dhkd.flow import FlowTeacher, flow_nll
from dhkd.methods.dhkd.losses import student_loss
from dhkd.methods.dhkd.student import CNNStudent, FreqBranch, Variant
from dhkd.models.noise import add_feature_noise
from dhkd.models.norm import FeatureNorm


def level_distance(student: torch.Tensor, teacher: torch.Tensor, kd: str) -> torch.Tensor:
    """(B, C, h, w) pair -> (B, h, w), the distance the student was trained on (loss.kd): "mse",
    mean over channels of the squared difference; "cosine", 1 - cosine similarity over channels."""
    student, teacher = student.float(), teacher.float()
    if kd == "cosine":
        return 1 - F.cosine_similarity(student, teacher, dim=1)
    return (student - teacher).pow(2).mean(dim=1)


class DHKDModel(nn.Module):
    """Teacher flow + student per level. shapes: [(C_l, H_l, W_l)] of the backbone levels;
    stats: train-set channel statistics for FeatureNorm. Flow arguments (clamp, hidden_ratio,
    pos_enc, pos_enc_dim) apply to the teacher and to a flow student. kd: the distillation
    distance ("mse" | "cosine") the student is trained on and the maps are scored with."""

    def __init__(
        self,
        shapes: list[tuple[int, int, int]],
        stats: list[tuple[torch.Tensor, torch.Tensor]],
        *,
        feature_norm: str = "train_stats",
        teacher_depth: int = 8,
        clamp: float = 2.0,
        hidden_ratio: float = 1.0,
        pos_enc: bool = False,
        pos_enc_dim: int = 16,
        student_kind: Literal["cnn", "flow"] = "cnn",
        student_blocks: int = 2,
        student_variant: Variant = "dual",
        freq_branch: FreqBranch = "conv1x1",
        student_hidden_ratio: float = 1.0,
        student_flow_depth: int = 8,
        kd: Literal["mse", "cosine"] = "mse",
    ) -> None:
        super().__init__()
        self.student_kind = student_kind
        self.kd = kd
        self.norm = FeatureNorm(feature_norm, stats)
        flow_args = {"clamp": clamp, "hidden_ratio": hidden_ratio, "pos_enc": pos_enc}
        flow_args["pos_enc_dim"] = pos_enc_dim
        self.teacher = FlowTeacher(shapes, depth=teacher_depth, **flow_args)
        if student_kind == "flow":
            self.student: nn.Module = FlowTeacher(shapes, depth=student_flow_depth, **flow_args)
        else:
            self.student = CNNStudent(
                shapes,
                blocks=student_blocks,
                variant=student_variant,
                freq_branch=freq_branch,
                hidden_ratio=student_hidden_ratio,
            )

    def _student(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.student_kind == "flow":
            return self.student(feats)[0]
        return self.student(feats)

    @torch.no_grad()
    def _targets(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Teacher(feats) in float32 always: under a mixed-precision training step too, so that
        the student is trained on the targets it is compared with at test time."""
        with torch.autocast(feats[0].device.type, enabled=False):
            return [z.float() for z in self.teacher([f.float() for f in feats])[0]]

    def targets(self, raw: list[torch.Tensor]) -> list[torch.Tensor]:
        """The student's float32 targets Teacher(normalised raw features)."""
        return self._targets(self.norm(raw))

    def teacher_loss(self, raw: list[torch.Tensor]) -> torch.Tensor:
        """Flow NLL per dimension, averaged over levels (stage 1)."""
        zs, jacs = self.teacher(self.norm(raw))
        return sum(flow_nll(z, j) for z, j in zip(zs, jacs, strict=True)) / len(zs)

    def student_loss(
        self,
        raw: list[torch.Tensor],
        generator: torch.Generator,
        *,
        noise: dict,
        loss: dict,
        targets: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Stage 2: the student sees noisy features and must output Teacher(clean features).

        noise: keyword arguments of noise.add_feature_noise (sigma, mask, prob, patch_size,
        patch_count); loss: those of losses.student_loss (affinity_weight, affinity_pool,
        affinity_form); the distillation distance is the model's own (kd). targets: the
        teacher's outputs for raw, if they were computed before (`targets(raw)`).
        """
        clean = self.norm(raw)
        if targets is None:
            targets = self._targets(clean)
        noisy = add_feature_noise(clean, generator=generator, **noise)
        return student_loss(self._student(noisy), targets, kd=self.kd, **loss)

    @torch.no_grad()
    def forward(self, raw: list[torch.Tensor]) -> list[torch.Tensor]:
        """Test time, no noise: per level (B, H_l, W_l) maps ||S(f) - T(f)||^2."""
        clean = self.norm(raw)
        targets = self._targets(clean)
        students = self._student(clean)
        return [level_distance(s, t, self.kd) for s, t in zip(students, targets, strict=True)]
