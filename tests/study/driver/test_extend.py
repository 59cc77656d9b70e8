"""Extending a finished study: 4 -> 6 trials and 1 -> 2 seeds. The first trials are not
trained again (only their new seed is), every trial ends with metrics over both seeds, the
summary and the report cover all six; any other change is refused with the differences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from study_helpers import fake_data, fake_spec_tree, mlflow_runs, optuna_trials

from dhkd.errors import ConfigError
from dhkd.study.design.spec import parse_spec
from dhkd.study.driver.runner import RunOptions, run_study

pytestmark = pytest.mark.slow


def seeded_fit(calls: Path):
    """A stand-in for fit_units: unit (c, s) scores 0.5 + sigma / 10 + s / 100 at every epoch,
    on the validation and the test images; each call writes one line (sigma, units) to `calls`."""

    def fit(cfg, data_root, units, *, callback=None, stage_callback=None, resume_state=None,
            out_dir=None, feature_cache=None, progress=True):  # fmt: skip
        import json
        from pathlib import Path
        from typing import NamedTuple

        from dhkd.training.result import FitResult

        class Report(NamedTuple):
            epoch: int
            metrics: dict
            state: object

        sigma = cfg.noise.sigma
        with calls.open("a") as f:
            f.write(json.dumps({"sigma": sigma, "units": [list(u) for u in units]}) + "\n")
        rows = [{"category": c, "seed": s, "pixel_aupro": 0.5 + sigma / 10 + s / 100}
                for c, s in units]  # fmt: skip
        cats = sorted({c for c, _ in units})
        metrics = {}
        for split in ("val", "test"):
            for c in cats:
                mine = [r["pixel_aupro"] for r in rows if r["category"] == c]
                metrics[f"{split}/{c}/pixel_aupro"] = sum(mine) / len(mine)
            metrics[f"{split}/pixel_aupro"] = sum(r["pixel_aupro"] for r in rows) / len(rows)
        first = 1 if resume_state is None else resume_state["epoch"] + 1
        for epoch in range(first, cfg.optim.epochs + 1):
            callback(Report(epoch, dict(metrics), lambda e=epoch: {"epoch": e}))
        (Path(out_dir) / "metrics.json").write_text(json.dumps({**metrics, "units": rows}))
        return FitResult(metrics=metrics, units=rows, selection={}, train_seconds=0.0,
                         eval_seconds=0.0, monitor_seconds=0.0, feature_seconds=0.0,
                         epochs=cfg.optim.epochs, stage_losses={}, peak_rss_mb=0.0,
                         peak_gpu_mb=None, fingerprint={})  # fmt: skip

    return fit


def _spec(tmp_path, **changes):
    tree = fake_spec_tree(
        tmp_path / "data",
        name="grow",
        scientific={"noise.sigma": {"type": "float", "low": 0.0, "high": 1.0}},
        sampler={"type": "random", "seed": 0},
        scheduler={"type": "none"},
        fixed={"optim.epochs": 2, "optim.eval_every": 1},
        num_samples=4,
        seeds=[0],
    )
    tree.update(changes)
    fake_data(tmp_path / "data", tree["data"]["categories"])
    return parse_spec(tree)


def _calls(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_extend_more_trials_and_seeds(tmp_path, tracking_uri, ray_local):
    calls = tmp_path / "calls.jsonl"
    opts = RunOptions(storage_path=tmp_path / "ray", tracking_uri=tracking_uri,
                      fit_fn=seeded_fit(calls), quiet=True)  # fmt: skip
    first = run_study(_spec(tmp_path), opts)
    assert first.complete and len(first.trials) == 4
    sigmas = {t.number: t.params["noise.sigma"] for t in optuna_trials(tmp_path / "ray", "grow")}
    assert len(_calls(calls)) == 4

    bigger = _spec(tmp_path, num_samples=6, seeds=[0, 1])
    with pytest.raises(ConfigError, match="pass --extend") as err:
        run_study(bigger, opts)
    assert "num_samples: 4 -> 6" in str(err.value) and "seeds: [0] -> [0, 1]" in str(err.value)
    other = _spec(tmp_path, num_samples=6, retries=3)
    opts.extend = True
    with pytest.raises(ConfigError, match="retries: 1 -> 3"):
        run_study(other, opts)

    summary = run_study(bigger, opts)
    assert summary.complete and len(summary.trials) == 6
    assert all(r["state"] == "COMPLETE" for r in summary.trials)
    later = _calls(calls)[4:]
    old = [c for c in later if c["sigma"] in sigmas.values()]
    assert sorted(c["sigma"] for c in old) == sorted(sigmas.values())  # each old trial once...
    assert all(c["units"] == [["a", 1], ["b", 1]] for c in old)  # ...on its new seed only
    new = [c for c in later if c["sigma"] not in sigmas.values()]
    assert len(new) == 2 and all(len(c["units"]) == 4 for c in new)

    expected = {r["number"]: 0.5 + r["params"]["noise.sigma"] / 10 + 0.005 for r in summary.trials}
    assert {r["number"]: r["value"] for r in summary.trials} == pytest.approx(expected)

    study, runs = mlflow_runs(tracking_uri, "grow")
    assert len(runs) == 6 and all(r.info.status == "FINISHED" for r in runs)
    assert study.data.tags["dhkd.extended"] == "True"
    for run in runs:
        number = int(run.data.tags["optuna_trial_number"])
        assert run.data.metrics["objective/pixel_aupro"] == pytest.approx(expected[number])
        assert run.data.metrics["val/a/pixel_aupro"] == pytest.approx(expected[number])
        assert run.data.metrics["test/b/pixel_aupro"] == pytest.approx(expected[number])
        assert run.data.tags["dhkd.seeds"] == "0,1"

    from dhkd.report.collect import load_study, load_units

    data = load_study("grow", tracking_uri)
    assert len(data.complete) == 6
    for trial in data.trials:
        assert data.objective_value(trial) == pytest.approx(expected[trial.number])
        assert sorted((u["category"], u["seed"]) for u in load_units(data, trial)) == [
            ("a", 0), ("a", 1), ("b", 0), ("b", 1)]  # fmt: skip
    assert data.spec["seeds"] == [0, 1]
