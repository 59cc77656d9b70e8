"""The layout of a run folder: every file `dhkd train` writes (and a study trial logs to MLflow
as artifacts under the same names).

    config.yaml                     the resolved config
    metrics.json                    the metrics and per-unit rows
    fingerprint.json                what produced the run (dhkd.fingerprint.run_fingerprint)
    checkpoint.pt                   the trained weights (dhkd.weights)
    scores_<category>_s<seed>.csv   the test image scores: path, label, score
    maps_<category>_s<seed>.png     the anomaly-map grid of the test images
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from dhkd.weights import WEIGHTS_FILE

_MAPS = re.compile(r"maps_(.+)_s(\d+)\.png")


@dataclass(frozen=True)
class RunFolder:
    """A run folder at `root`; the file names are class attributes, for MLflow artifacts."""

    root: Path

    CONFIG: ClassVar[str] = "config.yaml"
    METRICS: ClassVar[str] = "metrics.json"
    FINGERPRINT: ClassVar[str] = "fingerprint.json"
    CHECKPOINT: ClassVar[str] = WEIGHTS_FILE

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / self.CONFIG

    @property
    def metrics(self) -> Path:
        return self.root / self.METRICS

    @property
    def fingerprint(self) -> Path:
        return self.root / self.FINGERPRINT

    @property
    def checkpoint(self) -> Path:
        return self.root / self.CHECKPOINT

    @staticmethod
    def scores_name(category: str, seed: int) -> str:
        return f"scores_{category}_s{seed}.csv"

    @staticmethod
    def maps_name(category: str, seed: int) -> str:
        return f"maps_{category}_s{seed}.png"

    @staticmethod
    def parse_maps_name(name: str) -> tuple[str, int] | None:
        """(category, seed) of a maps_<category>_s<seed>.png name; None for any other name."""
        match = _MAPS.fullmatch(name)
        return (match[1], int(match[2])) if match else None

    def scores(self, category: str, seed: int) -> Path:
        return self.root / self.scores_name(category, seed)

    def maps(self, category: str, seed: int) -> Path:
        return self.root / self.maps_name(category, seed)
