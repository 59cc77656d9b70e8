"""A tiny method registered from outside the package (docs/methods.md, "Adding a method").

Method `meanfeat`: the anomaly map of a patch is its distance to the mean train feature of its
level, times `meanfeat.scale`. One stage ("fit", one epoch); no optimiser.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from dhkd.features import CachedSplit
from dhkd.methods.base import MethodUnit
from dhkd.methods.info import MethodInfo, Stage
from dhkd.models.norm import FeatureNorm
from dhkd.sections import Section, TrainConfig


class MeanfeatSection(Section):
    scale: float = Field(1.0, gt=0, description="multiplies the map")


class MeanfeatConfig(TrainConfig):
    method: Literal["meanfeat"] = "meanfeat"
    meanfeat: MeanfeatSection = MeanfeatSection()


class MeanfeatModel(nn.Module):
    def __init__(self, shapes, stats, *, feature_norm: str = "train_stats", scale: float = 1.0):
        super().__init__()
        self.norm = FeatureNorm(feature_norm, stats)
        self.scale = scale
        for i, (c, _, _) in enumerate(shapes):
            self.register_buffer(f"center{i}", torch.zeros(1, c, 1, 1))

    def fit(self, raw: list[torch.Tensor]) -> None:
        for i, f in enumerate(self.norm(raw)):
            getattr(self, f"center{i}").copy_(f.mean(dim=(0, 2, 3)).view(1, -1, 1, 1))

    def forward(self, raw: list[torch.Tensor]) -> list[torch.Tensor]:
        feats = self.norm(raw)
        return [
            self.scale * (f - getattr(self, f"center{i}")).pow(2).mean(dim=1)
            for i, f in enumerate(feats)
        ]


class MeanfeatUnit(MethodUnit):
    method = "meanfeat"

    def build_model(self, shapes):
        return MeanfeatModel(
            shapes,
            self.stats,
            feature_norm=self.cfg.backbone.feature_norm,
            scale=self.cfg.meanfeat.scale,
        )

    def run_epoch(self, stage: str, epoch: int) -> float:
        self.model.fit(self._features(self.train, torch.arange(len(self.train.labels))))
        self.epoch = epoch
        return 0.0

    def level_maps(self, split: CachedSplit, idx: torch.Tensor) -> list[torch.Tensor]:
        return self.model(self._features(split, idx))


METHOD = MethodInfo(
    name="meanfeat",
    description="distance to the mean train feature (a test method)",
    config=MeanfeatConfig,
    unit=f"{__name__}:MeanfeatUnit",
    stages=lambda cfg: (Stage("fit", 1),),
)
