"""Exact anomaly-detection metrics of the MVTec AD protocol (docs/design.md, "Evaluation").

Pure functions over numpy arrays. Maps are float arrays of shape (N, H, W); masks have the same
shape with values in {0, 1} or {0, 255} (any integer, bool or float dtype).

- ``image_auroc``: ROC AUC of one score per image against "mask has a defective pixel".
- ``pixel_auroc``: ROC AUC over all pixels of all images (equals scikit-learn's roc_auc_score).
- ``pixel_aupro``: area under the per-region-overlap curve up to ``fpr_limit``, divided by it,
  exactly as the official MVTec AD evaluation script defines it: 8-connected ground-truth regions,
  one global threshold swept over every distinct score, FPR over all normal pixels, PRO = mean
  over regions of the fraction of the region at or above the threshold, trapezoid rule with
  linear interpolation at the limit.
- extras: average precision (scikit-learn's definition) and the maximum F1 over thresholds.

Every metric is a sum over the defective pixels (or images) of counts of normal ones: the
normal scores are sorted once and each defective score is located in them by binary search,
so no curve is built, yet ties are treated as the official curves treat them (one point each).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import cv2
import numpy as np

from dhkd.errors import ConfigError, DataError

METRIC_NAMES = (
    "image_auroc",
    "image_ap",
    "image_f1_max",
    "pixel_auroc",
    "pixel_aupro",
    "pixel_ap",
    "pixel_f1_max",
)


class _Ranking(NamedTuple):
    """Scores split by ground truth, with the counts every metric is built from.

    normal: (n_normal,) sorted scores of normal samples. defective: (n_defective,) sorted scores
    of defective samples; below / equal: (n_defective,) number of normal scores strictly below /
    equal to each defective score; weight: (n_defective,) PRO weight 1 / (|region| * n_regions)
    in the same order, or None when regions were not labelled.
    """

    normal: np.ndarray
    defective: np.ndarray
    below: np.ndarray
    equal: np.ndarray
    weight: np.ndarray | None


def _rank(normal: np.ndarray, defective: np.ndarray, weight: np.ndarray | None) -> _Ranking:
    """Sort both score sets (normal in place: pass a copy) and count normal ones per defective."""
    normal.sort()
    order = np.argsort(defective)  # the order within ties never matters below
    defective = defective[order]
    below = np.searchsorted(normal, defective, side="left")
    # Only scores that occur among the normal ones need the second search.
    hit = np.flatnonzero(normal[np.minimum(below, normal.size - 1)] == defective)
    equal = np.zeros_like(below)
    equal[hit] = np.searchsorted(normal, defective[hit], side="right") - below[hit]
    return _Ranking(normal, defective, below, equal, None if weight is None else weight[order])


def _auroc(r: _Ranking) -> float:
    """Mann-Whitney statistic with ties at half weight = trapezoid area of the ROC curve."""
    pairs = int(np.sum(2 * r.below + r.equal, dtype=np.int64))
    return pairs / (2.0 * r.normal.size * r.defective.size)


def _at_or_above(r: _Ranking) -> tuple[np.ndarray, np.ndarray]:
    """(n_defective,) counts of defective and of normal scores >= each defective score."""
    n_def = r.defective.size
    defective_ge = n_def - np.searchsorted(r.defective, r.defective, side="left")
    return defective_ge, r.normal.size - r.below


def _average_precision(r: _Ranking) -> float:
    """sum over thresholds of (recall step) * precision, as scikit-learn's average_precision."""
    tp, fp = _at_or_above(r)
    return float(np.mean(tp / (tp + fp)))


def _f1_max(r: _Ranking) -> float:
    """Best F1 = 2 tp / (tp + fp + n_defective) over all thresholds."""
    tp, fp = _at_or_above(r)
    return float(np.max(2.0 * tp / (tp + fp + r.defective.size)))


def _aupro(r: _Ranking, fpr_limit: float) -> float:
    """AU-PRO up to fpr_limit, divided by it.

    On the official curve each distinct score t is one point; the step to it adds the normal
    pixels at t to the FPR and the defective ones at t to the PRO, so its trapezoid is
    (normal pixels at t / n_ok) * (PRO above t + half the PRO at t). Summed over the normal
    pixels above the crossing score, that is a sum over defective pixels of weight * (normal
    pixels between the cut and it + half the normal pixels tied with it).
    """
    n_ok, w = r.normal.size, r.weight
    k = math.floor(fpr_limit * n_ok)  # normal pixels whose whole FPR step lies inside the limit
    if k >= n_ok:
        area = np.dot(w, r.below + 0.5 * r.equal) / n_ok
        return float(area / fpr_limit)
    cut = r.normal[n_ok - k - 1]  # the distinct score at which the FPR crosses the limit
    cut_lo = int(np.searchsorted(r.normal, cut, side="left"))
    cut_hi = int(np.searchsorted(r.normal, cut, side="right"))
    above = int(np.searchsorted(r.defective, cut, side="right"))
    tied = int(np.searchsorted(r.defective, cut, side="left"))
    w_above = w[above:]
    # Full trapezoids: every normal pixel above the cut adds (PRO above it + half the PRO tied
    # with it) / n_ok; summed per defective pixel instead of per normal one.
    between = (r.below[above:] - cut_hi) + 0.5 * r.equal[above:]
    area = np.dot(w_above, between) / n_ok
    # The crossing segment, interpolated linearly at the limit.
    x0, dx = (n_ok - cut_hi) / n_ok, (cut_hi - cut_lo) / n_ok
    y0, dy = float(np.sum(w_above)), float(np.sum(w[tied:above]))
    width = fpr_limit - x0
    area += width * (y0 + 0.5 * dy * width / dx)
    return float(area / fpr_limit)


def _check_binary(values: np.ndarray, name: str) -> np.ndarray:
    """Return values != 0 after checking they are all in {0, 1} or all in {0, 255}."""
    if values.dtype == np.bool_:
        return values
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise DataError(f"{name} must be a bool, integer or float array, not {values.dtype}")
    if values.size:
        top = values.max()
        allowed = 255 if top > 1 else 1
        exact = np.issubdtype(values.dtype, np.integer) and top <= 1 and values.min() >= 0
        if not exact and not np.all((values == 0) | (values == allowed)):
            raise DataError(
                f"{name} must hold only 0/1 or only 0/255 (max here {top}); binarise it first, "
                f"e.g. {name} > 0, or pass the ground-truth mask images unchanged"
            )
    return values != 0


def _check_scores(values: np.ndarray, name: str) -> None:
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        raise DataError(f"{name} must be a real-valued array, got dtype {values.dtype}")
    if not np.all(np.isfinite(values)):
        raise DataError(
            f"{name} contains NaN or inf; fix the model output (e.g. a diverged run) or replace "
            f"them with np.nan_to_num before evaluating"
        )


def _check_maps(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate (N, H, W) maps and masks; return float maps and bool masks."""
    maps, masks = np.asarray(maps), np.asarray(masks)
    for name, arr in (("maps", maps), ("masks", masks)):
        if arr.ndim != 3:
            raise DataError(
                f"{name} must have shape (N, H, W), got {arr.shape}; add a batch axis with "
                f"{name}[None] for one image or drop a channel axis with {name}[:, 0]"
            )
    if maps.shape != masks.shape:
        raise DataError(
            f"maps {maps.shape} and masks {masks.shape} differ in shape; resize the maps to the "
            f"mask resolution (or the masks with nearest-neighbour) before evaluating"
        )
    if maps.size == 0:
        raise DataError(f"maps is empty (shape {maps.shape}); evaluate at least one image")
    _check_scores(maps, "maps")
    return maps, _check_binary(masks, "masks")


def _check_both_classes(n_normal: int, n_defective: int, what: str) -> None:
    if n_defective == 0:
        raise DataError(
            f"no defective {what} in the ground truth: the metric is undefined; "
            f"evaluate on a test set that includes defective images"
        )
    if n_normal == 0:
        raise DataError(
            f"no normal {what} in the ground truth: the metric is undefined; "
            f"evaluate on a test set that includes good images"
        )


def _check_fpr_limit(fpr_limit: float) -> float:
    valid = isinstance(fpr_limit, numbers.Real) and not isinstance(fpr_limit, bool)
    if not valid or not 0.0 < fpr_limit <= 1.0:
        raise ConfigError(
            f"fpr_limit must be a number in (0, 1], got {fpr_limit!r}; 0.3 is the MVTec standard"
        )
    return float(fpr_limit)


def _region_weights(masks: np.ndarray) -> np.ndarray:
    """(n_defective,) PRO weight 1 / (|region| * n_regions) of each defective pixel of the bool
    (N, H, W) masks, in masks[masks] order; regions are 8-connected, one image at a time."""
    inverse_sizes, n_regions = [], 0
    for mask in masks:
        if not mask.any():
            continue
        count, labels = cv2.connectedComponents(
            mask.view(np.uint8), connectivity=8, ltype=cv2.CV_32S
        )
        n_regions += count - 1
        labels = labels[mask]
        inverse_sizes.append(1.0 / np.bincount(labels, minlength=count)[labels])
    return np.concatenate(inverse_sizes) / n_regions


def _pixel_ranking(maps: np.ndarray, masks: np.ndarray, regions: bool) -> _Ranking:
    masks = np.ascontiguousarray(masks)
    n_defective = int(np.count_nonzero(masks))
    _check_both_classes(masks.size - n_defective, n_defective, "pixel")
    weight = _region_weights(masks) if regions else None
    return _rank(maps[~masks], maps[masks], weight)


def _image_ranking(scores: np.ndarray, labels: np.ndarray) -> _Ranking:
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 1 or scores.shape != labels.shape:
        raise DataError(
            f"scores {scores.shape} and labels {labels.shape} must both have shape (N,); "
            f"pass one score and one 0/1 label per image"
        )
    _check_scores(scores, "scores")
    labels = _check_binary(labels, "labels")
    _check_both_classes(int(np.sum(~labels)), int(np.sum(labels)), "image")
    return _rank(scores[~labels], scores[labels], None)


def image_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of (N,) image scores against (N,) labels (1 = defective), ties at half weight."""
    return _auroc(_image_ranking(scores, labels))


def image_ap(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision of (N,) image scores against (N,) 0/1 labels (scikit-learn's)."""
    return _average_precision(_image_ranking(scores, labels))


def image_f1_max(scores: np.ndarray, labels: np.ndarray) -> float:
    """Best F1 over all thresholds of (N,) image scores against (N,) 0/1 labels."""
    return _f1_max(_image_ranking(scores, labels))


def pixel_auroc(maps: np.ndarray, masks: np.ndarray) -> float:
    """ROC AUC over every pixel of (N, H, W) maps against (N, H, W) masks."""
    return _auroc(_pixel_ranking(*_check_maps(maps, masks), regions=False))


def pixel_ap(maps: np.ndarray, masks: np.ndarray) -> float:
    """Average precision over every pixel of (N, H, W) maps against (N, H, W) masks."""
    return _average_precision(_pixel_ranking(*_check_maps(maps, masks), regions=False))


def pixel_f1_max(maps: np.ndarray, masks: np.ndarray) -> float:
    """Best pixel F1 over all thresholds of (N, H, W) maps against (N, H, W) masks."""
    return _f1_max(_pixel_ranking(*_check_maps(maps, masks), regions=False))


def pixel_aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    """AU-PRO of (N, H, W) maps against (N, H, W) masks, integrated over FPR in [0, fpr_limit]
    and divided by fpr_limit, as the official MVTec AD evaluation script computes it."""
    fpr_limit = _check_fpr_limit(fpr_limit)
    return _aupro(_pixel_ranking(*_check_maps(maps, masks), regions=True), fpr_limit)


def evaluate_maps(
    maps: np.ndarray,
    masks: np.ndarray,
    fpr_limit: float = 0.3,
    image_scores: np.ndarray | None = None,
) -> dict[str, float]:
    """All metrics of METRIC_NAMES for (N, H, W) maps against (N, H, W) masks.

    An image is defective when its mask has a positive pixel. Its score is the map maximum,
    unless image_scores (N,) is given (e.g. top-k pooling). The pixels are sorted only once.
    """
    fpr_limit = _check_fpr_limit(fpr_limit)
    maps, masks = _check_maps(maps, masks)
    n_images = maps.shape[0]
    if image_scores is None:
        image_scores = maps.reshape(n_images, -1).max(axis=1)
    elif np.shape(image_scores) != (n_images,):
        raise DataError(
            f"image_scores must have shape ({n_images},) (one per map), "
            f"got {np.shape(image_scores)}"
        )
    images = _image_ranking(image_scores, masks.reshape(n_images, -1).any(axis=1))
    pixels = _pixel_ranking(maps, masks, regions=True)
    return {
        "image_auroc": _auroc(images),
        "image_ap": _average_precision(images),
        "image_f1_max": _f1_max(images),
        "pixel_auroc": _auroc(pixels),
        "pixel_aupro": _aupro(pixels, fpr_limit),
        "pixel_ap": _average_precision(pixels),
        "pixel_f1_max": _f1_max(pixels),
    }
