"""The config section of method knn: `knn.*` (README.md in this folder; docs/selection.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dhkd.sections import Section, TrainConfig


class KnnSection(Section):
    """PatchCore-style nearest-neighbour reference on the cached backbone features."""

    k: int = Field(1, ge=1, le=64, description="nearest memory-bank patches averaged per patch")
    coreset_ratio: float = Field(
        0.01, gt=0, le=1, description="fraction of train patches the coreset keeps (1 = all)"
    )
    coreset_min: int = Field(
        2048, ge=1, description="the coreset keeps at least this many patches (or all)"
    )
    projection_dim: int = Field(
        32, ge=4, le=4096, description="random projection width for the coreset distances"
    )
    aggregate: int = Field(3, ge=1, le=9, description="local average-pool size per level (1 = off)")
    chunk_elements: int = Field(
        2**24, ge=2**16, description="cap on query x bank distances held at once (memory bound)"
    )


class KnnConfig(TrainConfig):
    """A kNN run: the shared sections plus knn (no optimiser: optim.lr and epochs are unused)."""

    method: Literal["knn"] = "knn"
    knn: KnnSection = KnnSection()
