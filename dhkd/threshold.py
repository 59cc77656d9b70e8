"""The good/defective threshold on image scores, chosen at training time (config `threshold`).

Two modes: `f1_max` takes the score that maximises F1 on the labelled selection images;
`fpr` takes the lowest score that calls at most `target_fpr` of the good ones defective. An
image is defective when its score is >= the threshold. The threshold, how it was chosen and on
which images (`source`) are stored with the weights (dhkd/weights.py), so `dhkd predict`
decides exactly as the numbers written at training time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from dhkd.errors import DataError
from dhkd.sections import ThresholdConfig


@dataclass(frozen=True)
class Threshold:
    value: float
    mode: str  # "f1_max" | "fpr"
    target_fpr: float | None  # mode fpr only
    source: str  # which images chose it, e.g. "test" or "validation"
    f1: float  # F1 of the decisions at `value` on those images
    fpr: float  # share of their good images called defective
    recall: float  # share of their defective images called defective

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Threshold:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def decisions(scores: np.ndarray, threshold: float) -> np.ndarray:
    """1 (defective) where score >= threshold, else 0 (good)."""
    return (np.asarray(scores, dtype=np.float64) >= threshold).astype(np.int64)


def rates(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """F1, false-positive rate and recall of the decisions at `threshold`."""
    pred = decisions(scores, threshold)
    labels = np.asarray(labels)
    tp = int(((pred == 1) & (labels == 1)).sum())
    fp = int(((pred == 1) & (labels == 0)).sum())
    n_def, n_good = int((labels == 1).sum()), int((labels == 0).sum())
    return {
        "f1": 2.0 * tp / (tp + fp + n_def) if tp + fp + n_def else 0.0,
        "fpr": fp / n_good if n_good else 0.0,
        "recall": tp / n_def if n_def else 0.0,
    }


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise DataError(f"{scores.size} scores but {labels.size} labels for the threshold")
    if not np.isfinite(scores).all():
        raise DataError("image scores hold NaN or inf: the threshold cannot be chosen")
    if not set(np.unique(labels).tolist()) <= {0, 1}:
        raise DataError("threshold labels must be 0 (good) or 1 (defective)")
    return scores, labels


def _f1_max_value(scores: np.ndarray, labels: np.ndarray) -> float:
    if not (labels == 1).any():
        raise DataError("threshold mode f1_max needs defective images; use mode fpr")
    candidates = np.unique(scores[labels == 1])
    best, best_f1 = candidates[0], -1.0
    for value in candidates:  # ascending: ties keep the lowest, i.e. the most sensitive
        f1 = rates(scores, labels, value)["f1"]
        if f1 > best_f1:
            best, best_f1 = value, f1
    return float(best)


def _fpr_value(scores: np.ndarray, labels: np.ndarray, target: float) -> float:
    good = np.sort(scores[labels == 0])
    if good.size == 0:
        raise DataError("threshold mode fpr needs good images among the selection images")
    allowed = math.floor(target * good.size)  # good images that may score >= the threshold
    if allowed == 0:
        return float(np.nextafter(good[-1], np.inf))
    value = good[good.size - allowed]
    if (good >= value).sum() > allowed:  # ties at the cut: move just past them
        value = np.nextafter(value, np.inf)
    return float(value)


def choose_threshold(
    scores: np.ndarray, labels: np.ndarray, cfg: ThresholdConfig, source: str
) -> Threshold:
    """The threshold of `cfg.mode` on labelled image scores (1 = defective)."""
    scores, labels = _check(scores, labels)
    if cfg.mode == "f1_max":
        value, target = _f1_max_value(scores, labels), None
    else:
        value, target = _fpr_value(scores, labels, cfg.target_fpr), cfg.target_fpr
    r = rates(scores, labels, value)
    return Threshold(value, cfg.mode, target, source, r["f1"], r["fpr"], r["recall"])
