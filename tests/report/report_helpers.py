"""A hand-made study in MLflow, written through the platform's own Tracker (dhkd.study.tracking)
with the platform's study and trial params and tags, so its layout is exactly what `dhkd study run`
writes; the metric values are chosen here, so tests know every expected number (trial #n used
n + 1 CPU-hours and half a trial-hour)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")
CATEGORIES = ("a", "b", "c", "d")
SEEDS = (0, 1)
VAL_SHIFT = -0.01  # validation metrics = test metrics + VAL_SHIFT (the same order of trials)


@dataclass
class FakeTrial:
    number: int
    sigma: float
    weight: float
    state: str  # COMPLETE | PRUNED | FAILED
    level: float  # base metric value; category i adds 0.01 * i, seed s adds 0.004 * s
    drop: tuple[str, ...] = ()  # final metric keys not logged (a run missing a metric)
    units: list[dict] = field(default_factory=list)


def spec_tree(root: Path, name: str = "abl", **changes) -> dict:
    tree = {
        "name": name,
        "description": "noise level ablation with the affinity weight tuned (report tests)",
        "preset": "tiny",
        "data": {"root": str(root), "dataset": "custom", "categories": list(CATEGORIES)},
        "seeds": list(SEEDS),
        "fixed": {"optim.epochs": 2, "optim.eval_every": 1},
        "scientific": {"noise.sigma": {"type": "categorical", "values": [0.0, 0.2, 0.5]}},
        "nuisance": {
            "loss.affinity_weight": {"type": "float", "low": 0.01, "high": 1.0, "log": True}
        },
        "sampler": {"type": "tpe", "seed": 0},
        "num_samples": 6,
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
    }
    tree.update(changes)
    return tree


def default_trials() -> list[FakeTrial]:
    return [
        FakeTrial(0, 0.0, 0.1, "COMPLETE", 0.80),
        FakeTrial(1, 0.2, 0.05, "COMPLETE", 0.86),  # best of sigma 0.2 (and overall)
        FakeTrial(2, 0.2, 0.5, "COMPLETE", 0.83),
        FakeTrial(3, 0.5, 0.3, "PRUNED", 0.70),  # sigma 0.5 has no COMPLETE trial
        FakeTrial(4, 0.0, 0.02, "FAILED", 0.0),
        FakeTrial(5, 0.0, 0.9, "COMPLETE", 0.78),  # worse than #0 for sigma 0.0
    ]


def unit_rows(trial: FakeTrial, categories=CATEGORIES, seeds=SEEDS) -> list[dict]:
    rows = []
    for i, cat in enumerate(categories):
        for seed in seeds:
            value = trial.level + 0.01 * i + 0.004 * seed
            row = {"category": cat, "seed": seed}
            row.update({m: value + 0.02 * k for k, m in enumerate(METRICS)})
            rows.append(row)
    return rows


def summarise(units: list[dict], prefix: str = "test/", shift: float = 0.0) -> dict[str, float]:
    """As dhkd.training.evaluate.summarise: `<prefix><metric>` over units,
    `<prefix><category>/<metric>` over seeds (each value + shift)."""
    out = {}
    for m in METRICS:
        out[f"{prefix}{m}"] = float(np.mean([u[m] for u in units])) + shift
        for cat in dict.fromkeys(u["category"] for u in units):
            vals = [u[m] for u in units if u["category"] == cat]
            out[f"{prefix}{cat}/{m}"] = float(np.mean(vals)) + shift
    return out


def _artifacts(folder: Path, summary: dict, units: list[dict]) -> Path:
    from matplotlib.image import imsave

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps({**summary, "units": units}))
    rng = np.random.default_rng(0)
    for u in units:
        imsave(folder / f"maps_{u['category']}_s{u['seed']}.png", rng.random((24, 16, 3)))
    return folder


def write_study(tmp: Path, uri: str, trials: list[FakeTrial], **changes) -> str:
    """Track a finished study of `trials` into `uri`; returns its name."""
    from dhkd.study.design.spec import parse_spec
    from dhkd.study.driver.callbacks import trial_params, trial_tags
    from dhkd.study.driver.runner import study_params
    from dhkd.study.state.layout import StudyPaths
    from dhkd.study.tracking.tracker import Tracker

    spec = parse_spec(spec_tree(tmp / "data", **changes), base_dir=tmp)
    tracker = Tracker(StudyPaths(tmp / "ray", spec.name), uri)
    tracker.start_study(spec.name, study_params(spec), {"dhkd.resumed": "False"})
    for t in trials:
        config = {
            "trial_number": t.number,
            "params": {"noise.sigma": t.sigma, "loss.affinity_weight": t.weight},
        }
        params, tags = trial_params(spec, config), trial_tags(spec, config)
        tracker.start_trial(t.number, f"ray{t.number}", params, tags=tags)
        cost = {"cost/cpu_s": 3600.0 * (t.number + 1), "cost/gpu_s": 0.0, "cost/wall_s": 1800.0}
        if t.state == "FAILED":
            tracker.end_trial(t.number, "FAILED", error="TrainingError: non-finite loss",
                              metrics=cost)  # fmt: skip
            continue
        t.units = unit_rows(t, spec.data.category_names, spec.seeds)
        final = {**summarise(t.units), **summarise(t.units, "val/", VAL_SHIFT)}
        cats = spec.data.category_names
        final["objective/pixel_aupro"] = float(
            np.mean([final[f"val/{c}/pixel_aupro"] for c in cats])
        )
        first = {k: v - 0.05 for k, v in final.items() if k not in t.drop}
        tracker.log_metrics(t.number, first, step=1)
        if t.state == "PRUNED":
            tracker.end_trial(t.number, "PRUNED", tags={"stop_reason": "asha at epoch 1"},
                              metrics=cost)  # fmt: skip
            continue
        tracker.log_metrics(t.number, {k: v for k, v in final.items() if k not in t.drop}, 2)
        folder = _artifacts(tmp / "artifacts" / str(t.number), final, t.units)
        tracker.end_trial(t.number, "COMPLETE", artifacts=str(folder), metrics=cost)
    tracker.end_study("FINISHED", {"best_objective": 0.0}, None)
    return spec.name
