"""Measured seconds per (category, seed) unit, for a suite's plan.

Three sources, in this order:

1. MLflow: every COMPLETE trial and reference run of earlier studies (tags dhkd.role, state),
   with its `cost/wall_s` and `cost/cpu_s` metrics over all its units (its `dhkd.categories` x
   `dhkd.seeds` tags, or its study's spec params), its method (the trial's `method` param, the
   reference's `dhkd.reference` tag), its study run's `spec.preset` param and its `device` tag.
2. The suite's calibration file, STORAGE/suites/<suite>-calibration.json: one unit per
   (method, preset) that `dhkd suite plan|run --calibrate` trained itself
   (dhkd.suite.calibrate.calibration_measurements).
3. The suite's `costs:` table, seconds per unit as benchmarks/bench_methods.py measures them.

From each source, in turn, a unit of (method, preset, category) costs: the mean over runs of
that one category; else the mean over every unit of the method and preset, scaled by the
category's train-set size over the measured categories' mean size when all of them can be
counted in the suite's data roots (ROOT/<category>/train/good), unscaled otherwise. Only
measurements on the suite's kind of device (GPU when trials ask for one, else CPU) count.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from dhkd.suite.spec import SuiteSpec


@dataclass(frozen=True)
class Measurement:
    """Seconds spent on `units` (category, seed) units of one method at one preset."""

    method: str
    preset: str
    device: str  # cpu | gpu
    categories: tuple[str, ...]  # () where they are not known
    units: int
    wall_s: float
    cpu_s: float | None


@dataclass(frozen=True)
class UnitCost:
    """Seconds of one (category, seed) unit and where the figure comes from."""

    wall_s: float
    cpu_s: float | None
    source: str


def _names(text: str | None) -> list[str]:
    """A list param or tag as MLflow stores it: JSON (["a", "b"]) or comma-separated."""
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return [p.strip() for p in text.split(",") if p.strip()]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _search(client, experiment_ids: list[str], query: str) -> Iterable:
    token = None
    while True:
        page = client.search_runs(experiment_ids, query, max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def mlflow_measurements(client) -> list[Measurement]:
    """The cost of every COMPLETE trial and reference run in the store of `client`."""
    from dhkd.study.state.live import on_gpu

    ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return []
    studies = {r.info.run_id: r for r in _search(client, ids, "tags.`dhkd.role` = 'study'")}
    found = []
    for role in ("trial", "reference"):
        query = f"tags.`dhkd.role` = '{role}' and tags.state = 'COMPLETE'"
        for run in _search(client, ids, query):
            tags, metrics = run.data.tags, run.data.metrics
            study = studies.get(tags.get("mlflow.parentRunId"))
            if study is None:
                continue
            spec_params, spec_tags = study.data.params, study.data.tags
            method = (
                run.data.params.get("method") if role == "trial" else tags.get("dhkd.reference")
            )
            categories = _names(tags.get("dhkd.categories")) or _names(
                spec_tags.get(
                    "extended.spec.data.categories", spec_params.get("spec.data.categories")
                )
            )
            seeds = _names(tags.get("dhkd.seeds")) or _names(
                spec_tags.get("extended.spec.seeds", spec_params.get("spec.seeds"))
            )
            preset, wall = spec_params.get("spec.preset"), metrics.get("cost/wall_s")
            if not (method and preset and categories and seeds and wall):
                continue
            found.append(Measurement(
                method=method, preset=preset, device="gpu" if on_gpu(tags.get("device")) else "cpu",
                categories=tuple(categories), units=len(categories) * len(seeds),
                wall_s=float(wall), cpu_s=metrics.get("cost/cpu_s"),
            ))  # fmt: skip
    return found


def table_measurements(suite: SuiteSpec) -> list[Measurement]:
    """The suite's `costs:` table, each row one unit."""
    return [
        Measurement(
            method=c.method,
            preset=c.preset,
            device=c.device,
            categories=(c.category,) if c.category else (),
            units=1,
            wall_s=c.wall_s,
            cpu_s=c.cpu_s,
        )
        for c in suite.costs
    ]


def train_counter(roots: Iterable[Path]) -> Callable[[str], int | None]:
    """category -> its number of training images, from the first root that holds it (None where
    no root does)."""
    from dhkd.data.index import IMAGE_SUFFIXES

    roots = list(roots)

    @cache
    def count(category: str) -> int | None:
        for root in roots:
            folder = root / category / "train" / "good"
            if folder.is_dir():
                return sum(1 for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return None

    return count


def _cpu(rows: list[Measurement]) -> float | None:
    if any(m.cpu_s is None for m in rows):
        return None
    return sum(m.cpu_s or 0.0 for m in rows) / sum(m.units for m in rows)


class CostBook:
    """Seconds per unit by (method, preset, category) on one kind of device."""

    def __init__(
        self,
        device: str,
        sources: list[tuple[str, list[Measurement]]],
        train_size: Callable[[str], int | None],
    ) -> None:
        self.device = device
        self.sources = sources  # (name, measurements), best first
        self.train_size = train_size

    def unit_cost(self, method: str, preset: str, category: str) -> UnitCost | None:
        for name, measurements in self.sources:
            rows = [m for m in measurements
                    if (m.method, m.preset, m.device) == (method, preset, self.device)]  # fmt: skip
            if not rows:
                continue
            own = [m for m in rows if m.categories == (category,)]
            if own:
                wall = sum(m.wall_s for m in own) / sum(m.units for m in own)
                return UnitCost(wall, _cpu(own), f"{name}: {category}")
            units = sum(m.units for m in rows)
            wall, cpu = sum(m.wall_s for m in rows) / units, _cpu(rows)
            factor = self._size_factor(rows, category)
            if factor is None:
                return UnitCost(wall, cpu, f"{name}: mean of {method}, unscaled")
            scaled = None if cpu is None else cpu * factor
            return UnitCost(wall * factor, scaled, f"{name}: mean of {method} x train size")
        return None

    def _size_factor(self, rows: list[Measurement], category: str) -> float | None:
        """The category's train-set size over the measured units' mean size (None where a size
        cannot be counted)."""
        target = self.train_size(category)
        if target is None or any(not m.categories for m in rows):
            return None
        sizes, weight = 0.0, 0
        for m in rows:
            counts = [self.train_size(c) for c in m.categories]
            if any(n is None for n in counts):
                return None
            per_category = m.units / len(m.categories)  # the seeds
            sizes += per_category * sum(n or 0 for n in counts)
            weight += m.units
        mean = sizes / weight
        return target / mean if mean > 0 else None
