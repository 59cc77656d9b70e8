"""The training unit of method dhkd: flow teacher (stage "teacher"), then the denoising student
(stage "student"); the builder that turns the run's config into a DHKDModel."""

from __future__ import annotations

import numpy as np
import torch

from dhkd.features import CachedSplit
from dhkd.methods.base import MethodUnit, check_finite
from dhkd.methods.dhkd.model import DHKDModel
from dhkd.sections import TrainConfig

ADVICE = (
    "lower the learning rate (optim.lr / teacher.lr), the flow clamp (teacher.clamp) or the "
    "noise level (noise.sigma)"
)


def build_dhkd_model(cfg, shapes, stats) -> DHKDModel:
    """The one place a DHKDModel's arguments are read from the config."""
    t, s = cfg.teacher, cfg.student
    return DHKDModel(
        shapes,
        stats,
        feature_norm=cfg.backbone.feature_norm,
        teacher_depth=t.depth,
        clamp=t.clamp,
        hidden_ratio=t.hidden_ratio,
        pos_enc=t.pos_enc,
        pos_enc_dim=t.pos_enc_dim,
        student_kind=s.kind,
        student_blocks=s.blocks,
        student_variant=s.variant,
        freq_branch=s.freq_branch,
        student_hidden_ratio=s.hidden_ratio,
        student_flow_depth=s.flow_depth,
        kd=cfg.loss.kd,
    )


class DHKDUnit(MethodUnit):
    """Flow teacher trained on NLL (stage 1), then the denoising student (stage 2)."""

    method = "dhkd"
    optimizers = ("teacher_opt", "student_opt")
    generators = ("noise_generator",)
    saved_stages = ("teacher",)

    def __init__(
        self,
        cfg: TrainConfig,
        category: str,
        seed: int,
        train: CachedSplit,
        device: torch.device,
    ) -> None:
        super().__init__(cfg, category, seed, train, device)
        self.noise_generator = torch.Generator(device=device).manual_seed(seed + 1)
        self.teacher_opt = torch.optim.Adam(self.model.teacher.parameters(), lr=cfg.teacher.lr)
        self.student_opt = torch.optim.AdamW(
            self.model.student.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay
        )
        self.noise = cfg.noise.model_dump()
        self.loss = cfg.loss.model_dump(exclude={"kd"})
        self.train_targets: list[torch.Tensor] = []  # the frozen teacher's, after stage 1

    def build_model(self, shapes: list[tuple[int, int, int]]) -> DHKDModel:
        return build_dhkd_model(self.cfg, shapes, self.stats)

    def run_epoch(self, stage: str, epoch: int) -> float:
        if stage == "teacher":
            return self._teacher_epoch(epoch)
        return self._student_epoch(epoch)

    def _teacher_epoch(self, epoch: int) -> float:
        self.model.teacher.train()
        losses = []
        for idx in self.epoch_batches(last_stage=False):
            loss = self.model.teacher_loss(self._features(self.train, idx))
            where = f"teacher training of {self.name}, epoch {epoch}"
            losses.append(check_finite(loss, where, ADVICE))
            self.teacher_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.teacher.parameters(), 5.0)
            self.teacher_opt.step()
        return float(np.mean(losses))

    def finish_stage(self, stage: str) -> None:
        if stage == "teacher":
            self.model.teacher.eval().requires_grad_(False)
            self.train_targets = self._teacher_targets()
        super().finish_stage(stage)

    def _teacher_targets(self, chunk: int = 64) -> list[torch.Tensor]:
        """The frozen teacher's float32 outputs for every train image, once: the student stage
        reads its targets from them instead of running the flow at every step (the same values;
        as much memory as the train features in float32)."""
        n = len(self.train.labels)
        parts = [
            self.model.targets(self._features(self.train, torch.arange(i, min(i + chunk, n))))
            for i in range(0, n, chunk)
        ]
        return [torch.cat(level) for level in zip(*parts, strict=True)]

    def _student_epoch(self, epoch: int) -> float:
        self.model.student.train()
        self.set_epoch_lr(self.student_opt, epoch)
        losses = []
        for idx in self.epoch_batches():
            with self._autocast():
                loss = self.model.student_loss(
                    self._features(self.train, idx),
                    self.noise_generator,
                    noise=self.noise,
                    loss=self.loss,
                    targets=[t[idx.to(t.device)] for t in self.train_targets],
                )
            where = f"student training of {self.name}, epoch {epoch}"
            losses.append(check_finite(loss, where, ADVICE))
            self.student_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.student_opt.step()
        self.epoch = epoch
        return float(np.mean(losses))

    def level_maps(self, split: CachedSplit, idx: torch.Tensor) -> list[torch.Tensor]:
        return self.model(self._features(split, idx))
