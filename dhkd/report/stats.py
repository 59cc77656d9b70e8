"""Paired comparisons of each variant with the baseline: Wilcoxon signed-rank, Holm-corrected.

Pairs are (category, seed) units both columns evaluated (from their metrics.json artifacts), or
per-category means (MLflow metrics) where the units are unknown. A two-sided exact Wilcoxon test
cannot reach p < 0.05 with fewer than 6 non-zero differences, so fewer pairs get no test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_PAIRS = 6


@dataclass
class Comparison:
    variant: str
    baseline: str
    n_pairs: int
    pairing: str  # "category x seed" | "category means"
    median_diff: float | None  # variant - baseline, percentage points
    statistic: float | None
    p: float | None
    p_holm: float | None = None
    reason: str = ""  # why there is no test

    def text(self) -> str:
        head = f"{self.variant} vs {self.baseline}"
        if self.p is None:
            return f"{head}: no test ({self.reason})"
        return (
            f"{head}: median Δ {self.median_diff:+.2f} pts over {self.n_pairs} pairs "
            f"({self.pairing}), W = {self.statistic:g}, p = {self.p:.3g}, "
            f"Holm p = {self.p_holm:.3g}"
        )


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given), monotone and capped at 1."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def wilcoxon_pair(
    variant: str, baseline: str, x: list[float], y: list[float], pairing: str
) -> Comparison:
    """Test x (variant) against y (baseline), paired, values in percent."""
    from scipy.stats import wilcoxon

    diffs = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    n = len(diffs)
    nonzero = int(np.count_nonzero(np.abs(diffs) > 1e-12))
    median = float(np.median(diffs)) if n else None
    if nonzero < MIN_PAIRS:
        reason = (
            f"{n} pairs, {nonzero} with a difference; a two-sided Wilcoxon test needs at least "
            f"{MIN_PAIRS} to reach p < 0.05"
        )
        return Comparison(variant, baseline, n, pairing, median, None, None, reason=reason)
    result = wilcoxon(diffs, zero_method="wilcox", alternative="two-sided")
    p = float(result.pvalue)
    if not math.isfinite(p):
        return Comparison(variant, baseline, n, pairing, median, None, None, reason="p is NaN")
    return Comparison(variant, baseline, n, pairing, median, float(result.statistic), p)


def adjust(comparisons: list[Comparison]) -> list[Comparison]:
    """Fill p_holm over the comparisons that have a p-value (one family per table)."""
    tested = [c for c in comparisons if c.p is not None]
    for c, p_adj in zip(tested, holm([c.p for c in tested]), strict=True):
        c.p_holm = p_adj
    return comparisons
