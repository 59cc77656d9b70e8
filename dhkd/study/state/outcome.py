"""The keys a trial reports to Tune and the one rule that names a trial's final state.

Searcher (Optuna), tracking (MLflow) and the summary all call `trial_outcome`, so the three
always agree. A trial is COMPLETE only when its last result carries `finished` (reported after
fit_units returned) and a finite objective; stopped before that (ASHA, or the study's time
budget) it is PRUNED; an error after its retries, or a non-finite objective, is FAILED.
"""

from __future__ import annotations

import math
from typing import Any

from dhkd.threshold import DECISION_METRICS

EPOCH = "epoch"  # 1-based student epoch just finished
OBJECTIVE = "objective"  # the spec's validation metric, mean over categories (evaluation epochs)
FINISHED = "finished"  # 1 in the final report of a trial that trained every epoch
COMPUTE_S = "train/compute_s"  # seconds this attempt of the trial has run so far (every report)
CPU_S = "cpu_s"  # CPU seconds (all threads) this attempt has used so far (every report)
ATTEMPT = "attempt"  # id of this attempt of the trial (a retry or a resume is a new one)
DEVICE = "device"  # what the attempt computes on, e.g. "cuda: NVIDIA H100" or "cpu: x86_64"
UNITS = "units"  # config key of a top-up (driver/extend.py): the (category, seed) units to train
TRIAL_NUMBER = "trial_number"  # config key: the Optuna trial number
PARAMS = "params"  # config key: {dotted TrainConfig key: value}

COMPLETE, PRUNED, FAILED, RUNNING = "COMPLETE", "PRUNED", "FAILED", "RUNNING"
# MLflow run status: a PRUNED trial ended normally (stopped early by the scheduler); its
# `state` tag tells it from a COMPLETE one (see tracking/tracker.py)
RUN_STATUS = {COMPLETE: "FINISHED", PRUNED: "FINISHED", FAILED: "FAILED"}
BASE_METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")
LOGGED_METRICS = (*BASE_METRICS, *DECISION_METRICS)  # the stored threshold's F1 and measures
SPLITS = ("val", "test")  # metric key prefixes: "val/[<category>/]<metric>", "test/..."
TRAIN_KEYS = ("train/loss", COMPUTE_S)


def trial_outcome(result: dict[str, Any] | None, error: bool) -> str:
    if error:
        return FAILED
    if result and result.get(FINISHED) == 1:
        return COMPLETE if _finite(result.get(OBJECTIVE)) else FAILED
    return PRUNED


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def objective_key(metric: str) -> str:
    """The MLflow key of the study objective, e.g. objective/pixel_aupro."""
    return f"{OBJECTIVE}/{metric}"


def tracked_metrics(result: dict[str, Any], metric: str) -> dict[str, float]:
    """The metrics of a Tune result worth logging: validation and test metrics (means and per
    category; the maps' metrics and the stored threshold's decision metrics), train/loss,
    train/compute_s, and the objective as objective/<metric>."""
    out = {}
    for key, value in result.items():
        if not _finite(value):
            continue
        parts = key.split("/")
        split_metric = parts[0] in SPLITS and len(parts) in (2, 3) and parts[-1] in LOGGED_METRICS
        if split_metric or key in TRAIN_KEYS:
            out[key] = float(value)
        elif key == OBJECTIVE:
            out[objective_key(metric)] = float(value)
    return out
