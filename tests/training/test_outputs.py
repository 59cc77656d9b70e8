"""The run folder fit_units writes: exactly the files RunFolder names, metrics.json as
FitResult.record()."""

from __future__ import annotations

import json

from dhkd.config import load_config
from dhkd.features import FeatureCache
from dhkd.runs.layout import RunFolder
from dhkd.training.fit import fit_units


def test_the_run_folder_holds_the_files_runfolder_names(synthetic_root, tmp_path):
    cfg = load_config("tiny", overrides={"method": "knn"})
    units = [("stripes", 0), ("widget", 1)]
    run = RunFolder(tmp_path / "run")
    result = fit_units(
        cfg, synthetic_root, units, out_dir=run.root, feature_cache=FeatureCache(""), progress=False
    )
    expected = {run.config, run.metrics, run.fingerprint, run.checkpoint}
    expected |= {run.scores(c, s) for c, s in units} | {run.maps(c, s) for c, s in units}
    assert set(run.root.iterdir()) == expected
    assert json.loads(run.metrics.read_text()) == json.loads(json.dumps(result.record()))
    assert json.loads(run.fingerprint.read_text()) == result.fingerprint
    record = result.record()
    assert list(record)[: len(result.metrics)] == list(result.metrics)
    assert "fingerprint" not in record and "peak_gpu_mb" not in record  # on the CPU
    assert [RunFolder.parse_maps_name(run.maps(c, s).name) for c, s in units] == units
    assert RunFolder.parse_maps_name(run.scores("widget", 1).name) is None
