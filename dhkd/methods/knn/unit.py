"""The training unit of method knn: one stage ("fit", one epoch) builds the memory bank."""

from __future__ import annotations

import math

import torch

from dhkd.errors import TrainingError
from dhkd.features import CachedSplit
from dhkd.methods.base import MethodUnit
from dhkd.methods.knn.model import KnnModel, greedy_coreset


def build_knn_model(cfg, shapes, stats) -> KnnModel:
    """The one place a KnnModel's arguments are read from the config."""
    return KnnModel(
        shapes,
        stats,
        feature_norm=cfg.backbone.feature_norm,
        k=cfg.knn.k,
        aggregate=cfg.knn.aggregate,
        chunk_elements=cfg.knn.chunk_elements,
    )


class KnnUnit(MethodUnit):
    """Collects the train patches, keeps a greedy coreset of them; no gradient steps."""

    method = "knn"

    def build_model(self, shapes: list[tuple[int, int, int]]) -> KnnModel:
        return build_knn_model(self.cfg, shapes, self.stats)

    @torch.no_grad()
    def run_epoch(self, stage: str, epoch: int) -> float:
        """Fill the bank; returns the mean distance of a train patch to the kept ones (in the
        coreset's projection; 0 when every patch is kept)."""
        n, step = len(self.train.labels), self.cfg.optim.batch_size
        chunks = []
        for start in range(0, n, step):
            p = self.model.patches(
                self._features(self.train, torch.arange(start, min(n, start + step)))
            )
            chunks.append(p.permute(0, 2, 3, 1).reshape(-1, p.shape[1]))
        patches = torch.cat(chunks)
        knn = self.cfg.knn
        size = max(knn.coreset_min, math.ceil(knn.coreset_ratio * len(patches)))
        spread = 0.0
        if size < len(patches):
            keep, dist = greedy_coreset(patches, size, self.cfg.knn.projection_dim, self.generator)
            patches, spread = patches[keep.to(patches.device)], float(dist.mean())
        self.model.set_bank(patches)
        self.epoch = epoch
        return spread

    def level_map_count(self, shapes: list[tuple[int, int, int]]) -> int:
        return 1  # one map of distances to the bank, on the finest level's grid

    def level_maps(self, split: CachedSplit, idx: torch.Tensor) -> list[torch.Tensor]:
        return self.model(self._features(split, idx))

    def load_weights(self, model_state: dict) -> None:
        if model_state.get("bank") is None:
            raise TrainingError(f"knn checkpoint of {self.name} holds no memory bank")
        self.model.set_bank(model_state["bank"])
        self.model.load_state_dict(model_state)
