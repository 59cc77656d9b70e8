"""Tables built directly (no MLflow) for the LaTeX tests: the paper's size, and awkward names."""

from __future__ import annotations

import numpy as np

from dhkd.report.collect import Trial
from dhkd.report.published import load_published, published_columns
from dhkd.report.tables import AVERAGE, Cell, Table, TableColumn

VARIANTS = ("σ 0.0", "σ 0.2", "σ 0.5, variant spatial", "σ 1.0, variant dual")


def _trial(number: int) -> Trial:
    return Trial(f"run{number:04d}", number, "COMPLETE", {}, {}, [])


def paper_table(
    categories: list[str] | None = None,
    variants: tuple[str, ...] = VARIANTS,
    metric: str = "pixel_auroc",
    study: str = "noise_level",
) -> Table:
    """15 MVTec AD categories (or `categories`), the variant columns (3 seeds: mean ± std), a
    kNN reference column and the published columns of `metric`; the first variant misses one
    cell."""
    rows = [*(categories or load_published()["categories"]), AVERAGE]
    rng = np.random.default_rng(0)
    columns, cells = [], {}
    measured = [(f"v{i}", label, "measured") for i, label in enumerate(variants)]
    for i, (key, label, kind) in enumerate([*measured, ("knn", "kNN", "reference")]):
        columns.append(TableColumn(key, label, kind, _trial(i)))
        for row in rows:
            mean, std = 90 + 9.9 * rng.random(), 2 * rng.random()
            cells[(row, key)] = Cell(mean, std, 3, "mlflow", f"run{i:04d}", f"{row}/{metric}")
    cells[(rows[1], "v0")] = Cell(None, reason="metric missing from run run0000 (trial #0)")
    for pub in published_columns(metric):
        columns.append(TableColumn(pub.key, pub.label, "published"))
        for row in rows:
            num = pub.mean if row == AVERAGE else pub.values.get(row)
            cells[(row, pub.key)] = Cell(num, source="published", ref=pub.source)
    table = Table(study, metric, rows, columns, cells)
    table.notes = ["A long note with a sub-item:", "  the sub-item, indented."]
    table.selection = "Each column: the best complete trial of its value by max pixel_aupro."
    return table
