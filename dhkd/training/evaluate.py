"""Evaluating the units of a run: metrics of their maps on an evaluated split, the means over
units and per category, the thresholds chosen on the validation images and how they decide
(F1, precision, recall, false-alarm rate, balanced accuracy) on those and on the test images."""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from dhkd.config import TrainConfig
from dhkd.data.selection import protocol_label
from dhkd.features import CachedSplit
from dhkd.metrics import evaluate_maps
from dhkd.threshold import DECISION_METRICS, THRESHOLD_MEASURES, choose_threshold, measures, rates

METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")
VAL, TEST = "val/", "test/"  # key prefixes: validation (every evaluation) and test (once)

Maps = dict[str, tuple[np.ndarray, np.ndarray]]  # unit name -> (image scores, anomaly maps)


class Evaluation(NamedTuple):
    rows: list[dict]  # per unit: test metrics, "val" metrics, timings, threshold, map_range
    maps: Maps  # the test images'
    metrics: dict[str, float]  # "val/..." and "test/..." means (summarise, summarise_decisions)


def summarise(per_unit: list[dict], prefix: str) -> dict[str, float]:
    """Means over all units ("<prefix><metric>"), and per category over its seeds
    ("<prefix><category>/<metric>")."""
    out: dict[str, float] = {}
    for metric in METRICS:
        out[f"{prefix}{metric}"] = float(np.mean([u[metric] for u in per_unit]))
        for cat in dict.fromkeys(u["category"] for u in per_unit):
            vals = [u[metric] for u in per_unit if u["category"] == cat]
            out[f"{prefix}{cat}/{metric}"] = float(np.mean(vals))
    return out


def evaluate_units(
    units, splits: dict[str, CachedSplit], maps_out: Maps, calibrate: bool = True
) -> list[dict]:
    """Each unit on its category's split in `splits`; maps_out[unit.name] = (scores, maps).
    calibrate: first set score.level_norm's divisors for the model as it is now (the test
    evaluation, which follows the last validation one, keeps them)."""
    rows = []
    for unit in units:
        start = time.perf_counter()
        if calibrate:
            unit.calibrate_levels()
        split = splits[unit.category]
        scores, maps = unit.predict(split)
        values = evaluate_maps(maps, split.masks, image_scores=scores)
        maps_out[unit.name] = (scores, maps)
        rows.append(
            {
                "category": unit.category,
                "seed": unit.seed,
                **{m: float(values[m]) for m in METRICS},
                "eval_seconds": time.perf_counter() - start,
            }
        )
    return rows


def evaluate_run(
    cfg: TrainConfig,
    trainers,
    validation: dict[str, CachedSplit],
    val_rows: list[dict],
    val_maps: Maps,
    test: dict[str, CachedSplit],
) -> Evaluation:
    """The trained units on the test images (under protocol `test`, the validation pass is
    the test pass), with their last validation results, thresholds and how these decide."""
    if cfg.selection.protocol == "test":
        test_rows, test_maps = val_rows, val_maps
    else:
        test_maps = {}
        test_rows = evaluate_units(trainers, test, test_maps, calibrate=False)
    rows = [
        {
            **t,
            "val": {m: v[m] for m in METRICS},
            "train_seconds": unit.train_seconds,
            "eval_seconds": t["eval_seconds"] + (v["eval_seconds"] if v is not t else 0.0),
        }
        for unit, t, v in zip(trainers, test_rows, val_rows, strict=True)
    ]
    add_thresholds(cfg, trainers, rows, validation, val_maps, test, test_maps)
    metrics = {**summarise(val_rows, VAL), **summarise(test_rows, TEST)}
    metrics |= summarise_decisions(rows)
    return Evaluation(rows, test_maps, metrics)


def add_thresholds(cfg: TrainConfig, trainers, rows, validation, val_maps, test, test_maps):
    """Per unit: the threshold of cfg.threshold chosen on its validation images, its F1 and
    threshold.measures on those ("val") and on the test images (top level, "threshold_<name>");
    the map range of the validation maps."""
    source = "test" if cfg.selection.protocol == "test" else "validation"
    for unit, row in zip(trainers, rows, strict=True):
        scores, maps = val_maps[unit.name]
        labels = validation[unit.category].labels
        chosen = choose_threshold(scores, labels, cfg.threshold, source)
        row["threshold"] = chosen.to_dict()
        row["val"]["image_f1"] = chosen.f1
        test_scores, test_labels = test_maps[unit.name][0], test[unit.category].labels
        row["image_f1"] = rates(test_scores, test_labels, chosen.value)["f1"]
        on_val = measures(scores, labels, chosen.value)
        on_test = measures(test_scores, test_labels, chosen.value)
        for name in THRESHOLD_MEASURES:
            row["val"][f"threshold_{name}"] = on_val[name]
            row[f"threshold_{name}"] = on_test[name]
        row["map_range"] = [float(maps.min()), float(maps.max())]


def summarise_decisions(rows: list[dict]) -> dict[str, float]:
    """Means of DECISION_METRICS (the stored thresholds' F1 and measures) on the validation and
    the test images, over all units ("<prefix><metric>") and per category
    ("<prefix><category>/<metric>")."""
    out: dict[str, float] = {}
    for prefix, part in ((VAL, lambda r: r["val"]), (TEST, lambda r: r)):
        for metric in DECISION_METRICS:
            out[f"{prefix}{metric}"] = float(np.mean([part(r)[metric] for r in rows]))
            for cat in dict.fromkeys(r["category"] for r in rows):
                vals = [part(r)[metric] for r in rows if r["category"] == cat]
                out[f"{prefix}{cat}/{metric}"] = float(np.mean(vals))
    return out


def selection_info(cfg: TrainConfig) -> dict:
    """What chose and what reported the numbers of a run (metrics.json "selection")."""
    sel = cfg.selection
    return {**sel.model_dump(), "label": protocol_label(sel.protocol)}
