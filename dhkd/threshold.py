"""The good/defective threshold on image scores, chosen at training time (config `threshold`).

Four modes: `f1_max` takes the score that maximises F1 on the labelled selection images;
`fpr` takes the lowest score that calls at most `target_fpr` of the good ones defective;
`good_sigma` takes mean + `sigmas` x standard deviation of the good ones' scores; `between`
takes the score `fraction` of the way from the good ones' mean to the `f1_max` threshold
(synthetic defects score higher than real ones, so the threshold F1 puts just under them
misses quieter real defects; docs/decisions.md#threshold-mode). An image is
defective when its score is >= the threshold. The threshold, how it was chosen and on
which images (`source`) are stored with the weights (dhkd/weights.py), so `dhkd predict`
decides exactly as the numbers written at training time. `measures` says how well a threshold
separates labelled scores (precision, recall, false-alarm rate, balanced accuracy and its share
of the best any threshold reaches on them).
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass

import numpy as np

from dhkd.errors import DataError
from dhkd.sections import ThresholdConfig

# `measures` logged per unit and summarised as "<split>/[<category>/]threshold_<name>", beside
# the F1 at the stored threshold ("image_f1"): the decision metrics of a run
THRESHOLD_MEASURES = ("precision", "recall", "fpr", "ba", "ba_ratio")
DECISION_METRICS = ("image_f1", *(f"threshold_{m}" for m in THRESHOLD_MEASURES))


@dataclass(frozen=True)
class Threshold:
    value: float
    mode: str  # "f1_max" | "fpr" | "good_sigma" | "between"
    target_fpr: float | None  # mode fpr only
    source: str  # which images chose it, e.g. "test" or "validation"
    f1: float  # F1 of the decisions at `value` on those images
    fpr: float  # share of their good images called defective
    recall: float  # share of their defective images called defective
    sigmas: float | None = None  # mode good_sigma only; absent from weights older than it
    fraction: float | None = None  # mode between only; absent from weights older than it

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Threshold:
        """The stored dict; a field with a default may be missing (older weights)."""
        fields = cls.__dataclass_fields__.items()
        return cls(**{k: data[k] for k, f in fields if k in data or f.default is MISSING})


def decisions(scores: np.ndarray, threshold: float) -> np.ndarray:
    """1 (defective) where score >= threshold, else 0 (good)."""
    return (np.asarray(scores, dtype=np.float64) >= threshold).astype(np.int64)


def _counts(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[int, ...]:
    """(true positives, false positives, defective images, good images) at `threshold`."""
    pred = decisions(scores, threshold)
    labels = np.asarray(labels)
    tp = int(((pred == 1) & (labels == 1)).sum())
    fp = int(((pred == 1) & (labels == 0)).sum())
    return tp, fp, int((labels == 1).sum()), int((labels == 0).sum())


def rates(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """F1, false-positive rate and recall of the decisions at `threshold`."""
    tp, fp, n_def, n_good = _counts(scores, labels, threshold)
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


def _best_ba(scores: np.ndarray, labels: np.ndarray) -> float:
    """The highest balanced accuracy of any threshold on scores of both classes: every distinct
    score and one above the maximum (which calls every image good: 0.5) are tried."""
    good, bad = np.sort(scores[labels == 0]), np.sort(scores[labels == 1])
    cuts = np.append(np.unique(scores), np.nextafter(scores.max(), np.inf))
    recall = (bad.size - np.searchsorted(bad, cuts, side="left")) / bad.size
    fpr = (good.size - np.searchsorted(good, cuts, side="left")) / good.size
    return float(((recall + 1.0 - fpr) / 2.0).max())


def measures(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """How the decisions at `threshold` fare on labelled scores (1 = defective): precision
    (0 when nothing is called defective), recall, fpr (false-alarm rate: share of good images
    called defective), ba (balanced accuracy, (recall + 1 - fpr) / 2), best_ba (that of the
    best threshold on the same scores) and ba_ratio = ba / best_ba. Needs both classes."""
    scores, labels = _check(scores, labels)
    if not (labels == 0).any() or not (labels == 1).any():
        raise DataError(
            "threshold measures need good and defective images: balanced accuracy weighs the "
            "two equally; score images of both kinds"
        )
    tp, fp, n_def, n_good = _counts(scores, labels, threshold)
    recall, fpr = tp / n_def, fp / n_good
    ba = (recall + 1.0 - fpr) / 2.0
    best = _best_ba(scores, labels)
    return {
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": recall,
        "fpr": fpr,
        "ba": ba,
        "best_ba": best,
        "ba_ratio": ba / best,
    }


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


def _good_sigma_value(scores: np.ndarray, labels: np.ndarray, sigmas: float) -> float:
    good = scores[labels == 0]
    if good.size < 2:
        raise DataError(
            f"threshold mode good_sigma needs at least 2 good images among the selection images "
            f"to measure the spread of their scores, found {good.size}; add good images or use "
            "threshold.mode=fpr or f1_max"
        )
    return float(good.mean() + sigmas * good.std(ddof=1))


def _between_value(scores: np.ndarray, labels: np.ndarray, fraction: float) -> float:
    good = scores[labels == 0]
    if good.size == 0 or not (labels == 1).any():
        raise DataError(
            "threshold mode between needs good and defective images among the selection images "
            f"(found {good.size} good, {int((labels == 1).sum())} defective); use "
            "threshold.mode=fpr when there are good images only"
        )
    low = float(good.mean())
    return low + fraction * (_f1_max_value(scores, labels) - low)


def choose_threshold(
    scores: np.ndarray, labels: np.ndarray, cfg: ThresholdConfig, source: str
) -> Threshold:
    """The threshold of `cfg.mode` on labelled image scores (1 = defective)."""
    scores, labels = _check(scores, labels)
    target = cfg.target_fpr if cfg.mode == "fpr" else None
    sigmas = cfg.sigmas if cfg.mode == "good_sigma" else None
    fraction = cfg.fraction if cfg.mode == "between" else None
    if cfg.mode == "f1_max":
        value = _f1_max_value(scores, labels)
    elif cfg.mode == "fpr":
        value = _fpr_value(scores, labels, cfg.target_fpr)
    elif cfg.mode == "good_sigma":
        value = _good_sigma_value(scores, labels, cfg.sigmas)
    else:
        value = _between_value(scores, labels, cfg.fraction)
    r = rates(scores, labels, value)
    return Threshold(
        value, cfg.mode, target, source, r["f1"], r["fpr"], r["recall"], sigmas, fraction
    )
