"""A trained model on new images: the same loading, features and scoring as training.

Images are loaded as training loads them (dhkd.data.images.load_image: any size, RGB or gray,
resized to the run's square input), their backbone features are computed as the feature cache
computes them (float16), and the unit's own `predict` fuses, smooths and pools the maps, so a
test image scores here exactly what it scored when the run was evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dhkd.config import build_config
from dhkd.features import CachedSplit, extract_features
from dhkd.methods.base import MethodUnit
from dhkd.methods.registry import get_method
from dhkd.threshold import Threshold
from dhkd.weights import load_weights, select_unit


@dataclass
class Predictor:
    """One unit (category, seed) of a checkpoint, ready to score images."""

    unit: MethodUnit
    threshold: Threshold | None  # None: weights of a trial stopped early
    map_range: tuple[float, float] | None  # overlay scale; None: each map's own range
    fingerprint: dict[str, Any]

    @property
    def cfg(self):
        return self.unit.cfg

    @property
    def image_size(self) -> int:
        return self.unit.cfg.data.image_size

    @classmethod
    def from_weights(
        cls,
        data: dict[str, Any],
        category: str | None = None,
        seed: int | None = None,
        device: str = "cpu",
    ) -> Predictor:
        cfg = build_config(data["config"])
        entry = select_unit(data, category, seed)
        shapes = [tuple(int(v) for v in s) for s in entry["shapes"]]
        unit = (
            get_method(cfg.method)
            .unit_class()
            .for_inference(
                cfg,
                entry["category"],
                int(entry["seed"]),
                shapes,
                entry["model"],
                torch.device(device),
            )
        )
        threshold, span = entry.get("threshold"), entry.get("map_range")
        return cls(
            unit,
            Threshold.from_dict(threshold) if threshold else None,
            (float(span[0]), float(span[1])) if span else None,
            data.get("fingerprint") or {},
        )

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs) -> Predictor:
        return cls.from_weights(load_weights(path), **kwargs)

    def predict_images(
        self, images: np.ndarray, batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, S, S, 3) RGB at the run's size -> scores (N,) and maps (N, S, S)."""
        n, size = len(images), self.image_size
        features = extract_features(self.cfg, images, self.unit.device)
        split = CachedSplit(
            features=features,
            images=images,
            labels=np.zeros(n, dtype=np.int64),
            masks=np.zeros((n, size, size), dtype=np.uint8),
            paths=("",) * n,
        )
        return self.unit.predict(split, batch_size)

    def decide(self, scores: np.ndarray) -> list[str | None]:
        """ "defective" / "good" per score at the stored threshold (None without one)."""
        if self.threshold is None:
            return [None] * len(scores)
        return ["defective" if float(s) >= self.threshold.value else "good" for s in scores]
