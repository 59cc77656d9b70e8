"""Method knn: the nearest-neighbour reference (PatchCore-style memory bank, README.md)."""

from __future__ import annotations

from dhkd.methods.info import MethodInfo, Stage
from dhkd.methods.knn.config import KnnConfig


def _stages(cfg: KnnConfig) -> tuple[Stage, ...]:
    return (Stage("fit", 1),)  # one pass: collect the train patches, subsample, done


METHOD = MethodInfo(
    name="knn",
    description="memory bank of train patches (greedy coreset), distance to the k nearest",
    config=KnnConfig,
    unit="dhkd.methods.knn.unit:KnnUnit",
    stages=_stages,
)
