"""Published MVTec AD numbers (published_results.json) as reference columns of the tables.

Only sourced numbers are in the file; every metric block names the table it was read from.
A block with a mean but no per-category values is a "mean only" column (its category cells
stay empty). Methods of the DHKD paper's tables without any sourced number are reported in
the notes, never filled in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

DATA_FILE = "published_results.json"


@dataclass(frozen=True)
class PublishedColumn:
    key: str  # "published:<method>"
    label: str
    metric: str
    values: dict[str, float]  # category -> percent
    mean: float | None  # the paper's average row (percent)
    source: str
    paper: str

    @property
    def means_only(self) -> bool:
        return not self.values


@cache
def load_published() -> dict[str, Any]:
    """The parsed data file (read once)."""
    text = resources.files("dhkd.report").joinpath(DATA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def published_columns(metric: str) -> list[PublishedColumn]:
    """Columns with at least one sourced number for `metric`, in file order."""
    out = []
    for method in load_published()["methods"]:
        block = method.get("metrics", {}).get(metric)
        if not block or (not block.get("values") and block.get("mean") is None):
            continue
        out.append(
            PublishedColumn(
                key=f"published:{method['key']}",
                label=method["label"],
                metric=metric,
                values={k: float(v) for k, v in block.get("values", {}).items()},
                mean=None if block.get("mean") is None else float(block["mean"]),
                source=block["source"],
                paper=method["paper"],
            )
        )
    return out


def unsourced(metric: str) -> list[str]:
    """Labels of methods in the DHKD paper's table for `metric` with no sourced number."""
    return [
        m["label"]
        for m in load_published()["methods"]
        if metric in m.get("in_dhkd_tables", []) and metric not in m.get("metrics", {})
    ]
