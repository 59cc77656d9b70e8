"""Writing a run folder (dhkd.runs.layout.RunFolder): metrics.json, fingerprint.json,
config.yaml, checkpoint.pt (dhkd.weights), the test image scores and the anomaly-map grids."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from dhkd.config import TrainConfig, dump_config
from dhkd.features import CachedSplit
from dhkd.runs.layout import RunFolder, write_run_folder
from dhkd.training.evaluate import Maps
from dhkd.training.result import FitResult
from dhkd.viz import save_map_grid
from dhkd.weights import save_weights, weights_dict


def write_scores(path: Path, split: CachedSplit, scores: np.ndarray) -> None:
    """The image scores behind the metrics: path, label (1 = defective), score."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "score"])
        writer.writerows(
            [p, int(label), repr(float(s))]
            for p, label, s in zip(split.paths, split.labels, scores, strict=True)
        )


def write_outputs(
    run: RunFolder,
    cfg: TrainConfig,
    result: FitResult,
    trainers,
    test: dict[str, CachedSplit],
    maps: Maps,
) -> None:
    """Every file of the run folder, written whole (layout.write_run_folder: a failure
    leaves the folder as it was); maps: the test images' (scores, maps) per unit."""
    write_run_folder(run.root, lambda tmp: _write_files(tmp, cfg, result, trainers, test, maps))


def _write_files(
    run: RunFolder,
    cfg: TrainConfig,
    result: FitResult,
    trainers,
    test: dict[str, CachedSplit],
    maps: Maps,
) -> None:
    run.metrics.write_text(json.dumps(result.record(), indent=2))
    run.fingerprint.write_text(json.dumps(result.fingerprint, indent=2))
    dump_config(cfg, run.config)
    units = [
        {
            "category": u.category,
            "seed": u.seed,
            "model": u.model.state_dict(),
            "shapes": [list(s) for s in u.train.shapes],
            "threshold": row["threshold"],
            "map_range": row["map_range"],
        }
        for u, row in zip(trainers, result.units, strict=True)
    ]
    weights = weights_dict(cfg.model_dump(mode="json"), result.fingerprint, units)
    save_weights(weights, run.checkpoint)
    for unit in trainers:
        split = test[unit.category]
        scores, unit_maps = maps[unit.name]
        write_scores(run.scores(unit.category, unit.seed), split, scores)
        save_map_grid(
            split.images,
            split.masks,
            unit_maps,
            split.labels,
            run.maps(unit.category, unit.seed),
            title=f"{cfg.method.upper()} - {unit.category} (seed {unit.seed})",
        )
