"""The keys a trial reports to Tune and the one rule that names a trial's final state.

Searcher (Optuna), tracking (MLflow) and the summary all call `trial_outcome`, so the three
always agree. A trial is COMPLETE only when its last result carries `finished` (reported after
fit_units returned) and a finite objective; stopped before that (ASHA, or the study's time
budget) it is PRUNED; an error after its retries, or a non-finite objective, is FAILED.
"""

from __future__ import annotations

import math
from typing import Any

EPOCH = "epoch"  # 1-based student epoch just finished
OBJECTIVE = "objective"  # the spec's metric, mean over categories (evaluation epochs only)
FINISHED = "finished"  # 1 in the final report of a trial that trained every epoch
COMPUTE_S = "compute_s"  # seconds this attempt of the trial has run so far (every report)
CPU_S = "cpu_s"  # CPU seconds (all threads) this attempt has used so far (every report)
ATTEMPT = "attempt"  # id of this attempt of the trial (a retry or a resume is a new one)
DEVICE = "device"  # what the attempt computes on, e.g. "cuda: NVIDIA H100" or "cpu: x86_64"
TRIAL_NUMBER = "trial_number"  # config key: the Optuna trial number
PARAMS = "params"  # config key: {dotted TrainConfig key: value}

COMPLETE, PRUNED, FAILED, RUNNING = "COMPLETE", "PRUNED", "FAILED", "RUNNING"
# MLflow run status: a PRUNED trial ended normally (stopped early by the scheduler); its
# `state` tag tells it from a COMPLETE one (see tracking.py)
RUN_STATUS = {COMPLETE: "FINISHED", PRUNED: "FINISHED", FAILED: "FAILED"}
BASE_METRICS = ("loss", "image_auroc", "pixel_auroc", "pixel_aupro")


def trial_outcome(result: dict[str, Any] | None, error: bool) -> str:
    if error:
        return FAILED
    if result and result.get(FINISHED) == 1:
        return COMPLETE if _finite(result.get(OBJECTIVE)) else FAILED
    return PRUNED


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def tracked_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The metrics of a Tune result worth logging: base metrics, per-category ones, objective."""
    out = {}
    for key, value in result.items():
        base = key.rsplit("/", 1)[-1]
        if (base in BASE_METRICS or key in (OBJECTIVE, COMPUTE_S)) and _finite(value):
            out[key] = float(value)
    return out
