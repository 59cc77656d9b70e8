"""`dhkd reproduce`: train a logged run again on this machine and compare its numbers.

`reproduce` rebuilds the config and the data selection of a run (dhkd.runs.load), computes the
features with the threads the run's were computed with, trains again and compares metric by
metric; when they differ it names the fingerprint part that changed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dhkd.errors import DataError
from dhkd.runs.load import LoggedRun

TOLERANCE = 1e-6


@dataclass
class Reproduction:
    logged: LoggedRun
    metrics: dict[str, float]  # reproduced
    fingerprint: dict[str, Any]  # of the reproduction
    rows: list[tuple[str, float, float]] = field(default_factory=list)  # key, logged, now
    differences: list[str] = field(default_factory=list)  # fingerprint lines

    @property
    def max_diff(self) -> float:
        return max((abs(a - b) for _, a, b in self.rows), default=0.0)

    @property
    def agrees(self) -> bool:
        return bool(self.rows) and self.max_diff <= TOLERANCE


def reproduce(
    logged: LoggedRun,
    *,
    data_root: str | Path | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> Reproduction:
    """Train the logged run again here and compare its metrics."""
    import torch

    from dhkd.config import build_config
    from dhkd.features import FeatureCache
    from dhkd.fingerprint import compare
    from dhkd.training.fit import fit_units

    cfg = build_config(logged.config)
    fp = logged.fingerprint
    root = Path(data_root or fp["data"]["root"])
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist here"
        raise DataError(f"the run's data root {root} {what}; pass --data ROOT of the same dataset")
    units = [(str(c), int(s)) for c, s in fp["units"]]
    threads = torch.get_num_threads()
    torch.set_num_threads(int(fp.get("threads") or threads))
    try:
        result = fit_units(
            cfg,
            root,
            units,
            out_dir=out_dir,
            # features from the files now, with the threads that computed the logged run's
            feature_cache=FeatureCache("", max_memory_items=0, threads=_threads(fp)),
            progress=progress,
        )
    finally:
        torch.set_num_threads(threads)
    now = result.metrics
    rows = [(k, v, now[k]) for k, v in sorted(logged.metrics.items()) if k in now]
    rep = Reproduction(logged, now, result.fingerprint, rows)
    if data_root is not None:  # another folder on purpose: compare contents only
        rep.fingerprint["data"]["root"] = fp["data"]["root"]
    rep.differences = compare(fp, rep.fingerprint)
    return rep


def _threads(fp: dict) -> dict[str, int]:
    """The fingerprint's feature threads ({"<category>/<split>": n}); {} for runs logged before
    they were recorded, or where unknown."""
    return {k: int(v) for k, v in (fp.get("feature_threads") or {}).items() if v}


def format_reproduction(rep: Reproduction) -> str:
    lines = [f"{'metric':<34} {'logged':>12} {'reproduced':>12} {'diff':>10}"]
    for key, a, b in rep.rows:
        diff = abs(a - b) if math.isfinite(a) and math.isfinite(b) else float("nan")
        lines.append(f"{key:<34} {a:>12.6f} {b:>12.6f} {diff:>10.2e}")
    if not rep.rows:
        lines.append("(no metric of the logged run to compare)")
    if rep.agrees:
        lines.append(f"reproduced: every metric within {TOLERANCE:g} of {rep.logged.label}")
    else:
        lines.append(
            f"NOT reproduced: largest difference {rep.max_diff:.3g} (tolerance {TOLERANCE:g})"
        )
    if rep.differences:
        lines.append("what differs from the logged run:")
        lines += [f"  {line}" for line in rep.differences]
    elif not rep.agrees:
        lines.append("the fingerprints agree (same code, data, device, versions, threads)")
    return "\n".join(lines)
