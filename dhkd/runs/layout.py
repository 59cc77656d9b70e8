"""The layout of a run folder: every file `dhkd train` writes (and a study trial logs to MLflow
as artifacts under the same names).

    config.yaml                     the resolved config
    metrics.json                    the metrics and per-unit rows
    fingerprint.json                what produced the run (dhkd.fingerprint.run_fingerprint)
    checkpoint.pt                   the trained weights (dhkd.weights)
    scores_<category>_s<seed>.csv   the test image scores: path, label, score
    maps_<category>_s<seed>.png     the anomaly-map grid of the test images

A run folder is written whole (`write_run_folder`): the files go into a temporary sibling that
then takes the folder's place, so a run that fails leaves the folder as it was, and a new run
never sits beside files of an older one.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from dhkd.weights import WEIGHTS_FILE

_MAPS = re.compile(r"maps_(.+)_s(\d+)\.png")
_SCORES = re.compile(r"scores_(.+)_s(\d+)\.csv")


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

    def run_files(self) -> list[Path]:
        """The files of a run (any name above) the folder holds; [] when it is not a folder."""
        if not self.root.is_dir():
            return []
        fixed = {self.CONFIG, self.METRICS, self.FINGERPRINT, self.CHECKPOINT}
        return sorted(
            p
            for p in self.root.iterdir()
            if p.name in fixed or _MAPS.fullmatch(p.name) or _SCORES.fullmatch(p.name)
        )

    def holds_run(self) -> bool:
        return bool(self.run_files())


def write_run_folder(root: str | Path, fill: Callable[[RunFolder], None]) -> RunFolder:
    """fill(RunFolder(tmp)) writes a run into a new sibling of `root`, which then replaces
    `root` whole (renames on one file system); when fill raises, `root` is left untouched."""
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f".{root.name}.new-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        fill(RunFolder(tmp))
        if root.is_dir() and any(root.iterdir()):
            old = root.with_name(f".{root.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(root, old)
            try:
                os.replace(tmp, root)
            except OSError:
                os.replace(old, root)
                raise
            shutil.rmtree(old)
        else:
            os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return RunFolder(root)
