"""Helpers of the study tests: fake trainings whose pruning and failures are exact, spec trees,
and readers of what a study left in MLflow and Optuna."""

from __future__ import annotations

from pathlib import Path


def make_fake_fit(
    marks: Path, fail_sigma: float = 0.99, flaky_sigma: float = -1.0, epoch_s: float = 0.05
):
    """A stand-in for dhkd.training.fit.fit_units with the same signature and reports.

    The k-th trial to start (counted by marker files in `marks`) scores 1/k at its last epoch
    (value * epoch / epochs before), so with one trial at a time the first is best and ASHA
    must stop the others. noise.sigma == fail_sigma raises TrainingError at epoch 2 on every
    attempt; noise.sigma == flaky_sigma fails once at epoch 3 and succeeds when retried.
    Everything is defined inside this factory, so Ray pickles it by value.
    """

    def fit(cfg, data_root, units, *, callback=None, stage_callback=None, resume_state=None,
            out_dir=None, feature_cache=None, progress=True):  # fmt: skip
        import json
        import time
        import uuid
        from typing import NamedTuple

        from dhkd.errors import TrainingError
        from dhkd.training.result import FitResult

        class Report(NamedTuple):
            epoch: int
            metrics: dict
            state: object

        marks.mkdir(parents=True, exist_ok=True)
        sigma = cfg.noise.sigma
        tag = f"{sigma:.4f}"
        if sigma == fail_sigma:
            (marks / f"attempt-{tag}-{uuid.uuid4().hex}").touch()
        elif resume_state is None:
            (marks / f"start-{tag}").touch()
        starts = sorted(marks.glob("start-*"), key=lambda p: p.stat().st_mtime_ns)
        order = 1 + next((i for i, p in enumerate(starts) if p.name == f"start-{tag}"), 0)
        first = 1 if resume_state is None else resume_state["epoch"] + 1
        cats = sorted({c for c, _ in units})
        epochs = cfg.optim.epochs
        for epoch in range(first, epochs + 1):
            time.sleep(epoch_s)
            if sigma == fail_sigma and epoch == 2:
                raise TrainingError(f"non-finite loss in unit {units[0]} at epoch {epoch}")
            flaky_mark = marks / f"flaky-{tag}"
            if sigma == flaky_sigma and epoch == 3 and not flaky_mark.exists():
                flaky_mark.touch()
                raise RuntimeError("worker lost (simulated)")
            value = epoch / epochs / order
            metrics = {"train/loss": 1.0 / epoch, "val/pixel_aupro": value}
            metrics.update({f"val/{c}/pixel_aupro": value for c in cats})
            callback(Report(epoch, metrics, lambda e=epoch: {"epoch": e}))
        final = {
            f"{split}/{key}": 1.0 / order
            for split in ("val", "test")
            for key in ("pixel_aupro", *(f"{c}/pixel_aupro" for c in cats))
        }
        extra = {"resumed_from": None if resume_state is None else resume_state["epoch"]}
        (Path(out_dir) / "metrics.json").write_text(json.dumps({**final, **extra}))
        return FitResult(metrics=final, units=[], selection={}, train_seconds=0.1,
                         eval_seconds=0.0, monitor_seconds=0.0, feature_seconds=0.0,
                         epochs=epochs, stage_losses={}, peak_rss_mb=0.0, peak_gpu_mb=None,
                         fingerprint={})  # fmt: skip

    return fit


def fake_data(root: Path, categories) -> None:
    """A tiny valid dataset of the `categories` not yet under `root`: a study checks its data
    (dhkd.data.check) before any trial, also with fake trainings."""
    from dhkd.data.synth import make_synthetic_dataset

    missing = [c for c in categories if not (root / c).is_dir()]
    if missing:
        make_synthetic_dataset(root, missing, image_size=16, n_train=2, n_test_good=1,
                               n_test_defect=1)  # fmt: skip


def fake_spec_tree(root: Path, **changes) -> dict:
    tree = {
        "name": "fake",
        "description": "fake trainings for platform tests",
        "preset": "tiny",
        "data": {"root": str(root), "dataset": "custom", "categories": ["a", "b"]},
        "fixed": {"optim.epochs": 4, "optim.eval_every": 1},
        "scientific": {"noise.sigma": {"type": "categorical", "values": [0.1, 0.2, 0.99]}},
        "sampler": {"type": "grid", "seed": 0},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
        "retries": 1,
        "budget": {"max_concurrent": 1},
    }
    tree.update(changes)
    return tree


def mlflow_runs(uri: str, name: str) -> tuple[object, list]:
    """(study run, trial runs) of the experiment `name`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    study = [r for r in runs if r.data.tags.get("dhkd.role") == "study"]
    trials = [r for r in runs if r.data.tags.get("dhkd.role") == "trial"]
    assert len(study) == 1, f"expected one study run, got {len(study)}"
    return study[0], trials


def optuna_trials(storage: Path, name: str) -> list:
    import optuna

    url = f"sqlite:///{storage / name / 'study' / 'optuna.db'}"
    study = optuna.load_study(study_name=name, storage=url)
    return study.get_trials(deepcopy=False)
