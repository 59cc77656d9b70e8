"""The result of training and evaluating the units of a run (fit_units) and its metrics.json."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class FitResult:
    metrics: dict[str, float]  # "val/..." and "test/..." means, overall and per category
    units: list[dict]  # per unit: test and "val" metrics, timings, threshold, map_range
    selection: dict  # cfg.selection and its label (evaluate.selection_info)
    train_seconds: float
    eval_seconds: float  # the last validation pass and the test pass
    monitor_seconds: float  # the validation passes of earlier epochs, every optim.eval_every
    feature_seconds: float
    epochs: int  # of the last stage
    stage_losses: dict[str, list[float]]  # per earlier stage, "train/<loss>": its epoch losses
    peak_rss_mb: float
    peak_gpu_mb: float | None  # None on the CPU
    fingerprint: dict  # dhkd.fingerprint.run_fingerprint, with the feature threads

    def record(self) -> dict:
        """metrics.json: the metrics, then every other field but the fingerprint (a file of
        its own); peak_gpu_mb only when a GPU was used."""
        rest = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("metrics", "fingerprint"):
            del rest[name]
        if self.peak_gpu_mb is None:
            del rest["peak_gpu_mb"]
        return {**self.metrics, **rest}
