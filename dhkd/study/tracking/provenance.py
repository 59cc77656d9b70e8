"""What a finished run's output folder (a trial's or the reference's) adds to its MLflow run:
the fingerprint as tags, the data as dataset inputs, and its weights unless the spec's
keep_weights keeps them for the run's final state (`dhkd reproduce` and `dhkd predict --run`
read them back through dhkd.runs).
"""

from __future__ import annotations

import json
from typing import Any

from dhkd.fingerprint import dataset_inputs, fingerprint_tags
from dhkd.runs.layout import RunFolder
from dhkd.study.state.outcome import COMPLETE


def provenance_of(folder: str | None, state: str, keep: str) -> dict[str, Any]:
    """Tracking arguments from a finished run's output folder (a trial's or the reference's):
    fingerprint tags, dataset inputs, and the weights left out unless keep_weights keeps them
    for this state."""
    out: dict[str, Any] = {"tags": {}, "inputs": [], "exclude": []}
    if folder is None:
        return out
    kept = keep == "all" or (keep == "complete" and state == COMPLETE)
    if not kept:
        out["exclude"] = [RunFolder.CHECKPOINT]
    fp_file = RunFolder(folder).fingerprint
    if fp_file.is_file():
        fp = json.loads(fp_file.read_text())
        out["tags"] = fingerprint_tags(fp)
        out["inputs"] = dataset_inputs(fp)
    return out
