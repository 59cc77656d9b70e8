"""Train and evaluate a method on (category, seed) units: its stages, metrics, outputs.

`fit_units` trains several units in lockstep so that a study trial can report one number per
epoch (the mean over its categories and seeds) and a scheduler can stop it early. `fit` is the
single-category entry point of `dhkd train`.
"""

from __future__ import annotations

import csv
import functools
import json
import random
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from dhkd.config import TrainConfig, dump_config
from dhkd.errors import DataError
from dhkd.features import CachedSplit, FeatureCache, default_feature_cache
from dhkd.fingerprint import run_fingerprint
from dhkd.methods.info import Stage
from dhkd.methods.registry import get_method, make_unit
from dhkd.metrics import evaluate_maps
from dhkd.threshold import choose_threshold
from dhkd.viz import save_map_grid
from dhkd.weights import WEIGHTS_FILE, save_weights, weights_dict

METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")
THRESHOLD_SOURCE = "test"  # the images the stored threshold is chosen on
FINGERPRINT_FILE = "fingerprint.json"


class EpochReport(NamedTuple):
    epoch: int  # 1-based epoch of the last (evaluated) stage just finished
    metrics: dict[str, float]  # "loss"; at evaluation epochs also the metric means
    state: Callable[[], dict]  # full training state for a checkpoint


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise DataError("optim.device=cuda but no CUDA device is visible; use auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def _check_test_split(category: str, test: CachedSplit) -> None:
    if not (test.labels == 1).any() or not (test.labels == 0).any():
        raise DataError(
            f"category '{category}' needs both good and defective test images to be evaluated "
            f"(found {int((test.labels == 0).sum())} good, {int((test.labels == 1).sum())} "
            "defective); add test/good and test/<defect> images"
        )
    defective_masks = test.masks[test.labels == 1].reshape((test.labels == 1).sum(), -1)
    if not defective_masks.any(axis=1).all():
        raise DataError(
            f"category '{category}': some defective test images have empty masks; "
            "run `dhkd data check` to list them"
        )


def _summarise(per_unit: list[dict]) -> dict[str, float]:
    """Means over all units, and per category over its seeds ("<category>/<metric>")."""
    out: dict[str, float] = {}
    for metric in METRICS:
        out[metric] = float(np.mean([u[metric] for u in per_unit]))
        for cat in dict.fromkeys(u["category"] for u in per_unit):
            vals = [u[metric] for u in per_unit if u["category"] == cat]
            out[f"{cat}/{metric}"] = float(np.mean(vals))
    return out


def _evaluate(units, maps_out: dict) -> list[dict]:
    rows = []
    for unit in units:
        start = time.perf_counter()
        scores, maps = unit.predict()
        values = evaluate_maps(maps, unit.test.masks, image_scores=scores)
        maps_out[unit.name] = (scores, maps)
        rows.append(
            {
                "category": unit.category,
                "seed": unit.seed,
                **{m: float(values[m]) for m in METRICS},
                "train_seconds": unit.train_seconds,
                "eval_seconds": time.perf_counter() - start,
            }
        )
    return rows


def _run_stage(units, epochs: range, stage: str, progress: bool, on_epoch=None) -> None:
    """Run `stage` for `epochs`. Progress: a bar on a terminal; one line per epoch where
    stderr is not one (a log file, `ray job submit`), instead of carriage-return updates."""
    interactive = progress and sys.stderr.isatty()
    bar = tqdm(epochs, desc=stage, disable=not interactive, leave=False, unit="epoch")
    for epoch in bar:
        losses = []
        for unit in units:
            start = time.perf_counter()
            losses.append(unit.run_epoch(stage, epoch))
            unit.train_seconds += time.perf_counter() - start
        loss = float(np.mean(losses))
        shown = {"loss": loss}
        if on_epoch is not None:
            shown = on_epoch(epoch, loss)
        values = {k: f"{v:.4f}" for k, v in shown.items() if "/" not in k}
        if interactive:
            bar.set_postfix(values)
        elif progress:
            text = " ".join(f"{k}={v}" for k, v in values.items())
            print(f"[{stage}] epoch {epoch}/{epochs[-1]} {text}", file=sys.stderr, flush=True)


def _run_earlier_stages(trainers, stages: list[Stage], progress: bool, on_stage_end=None) -> None:
    """Every stage before the last, each to its end unless every unit finished it already;
    on_stage_end(name) after each stage that ran (so that it can be checkpointed)."""
    for stage in stages:
        if not all(u.stage_done(stage.name) for u in trainers):
            _run_stage(trainers, range(1, stage.epochs + 1), stage.name, progress)
            for unit in trainers:
                unit.finish_stage(stage.name)
            if on_stage_end is not None:
                on_stage_end(stage.name)


def fit_units(
    cfg: TrainConfig,
    data_root: str | Path,
    units: Sequence[tuple[str, int]],
    *,
    callback: Callable[[EpochReport], None] | None = None,
    stage_callback: Callable[[str, Callable[[], dict]], None] | None = None,
    resume_state: dict | None = None,
    out_dir: str | Path | None = None,
    feature_cache: FeatureCache | None = None,
    progress: bool = True,
) -> dict:
    """Train every (category, seed) unit of `cfg`, evaluating on each category's test split.

    callback gets an EpochReport per epoch of the last stage; stage_callback(name, state) is
    called when an earlier stage (dhkd's teacher) has run to its end, with the function that
    returns the training state (epoch 0), so that a resumed run does not train that stage again.

    Returns {"metrics", "units", "train_seconds", "eval_seconds", "feature_seconds",
    "peak_rss_mb", ["peak_gpu_mb"], "epochs"}; see TRAIN_API in the docs for the keys.
    """
    if not units:
        raise DataError("no (category, seed) units to train")
    seed_everything(cfg.seed)
    device = resolve_device(cfg.optim.device)
    fingerprint = run_fingerprint(data_root, units, device)
    cache = feature_cache or default_feature_cache()
    start = time.perf_counter()
    splits = {}
    for cat in dict.fromkeys(c for c, _ in units):
        test = cache.get(cfg, data_root, cat, "test", device)
        _check_test_split(cat, test)
        splits[cat] = (cache.get(cfg, data_root, cat, "train", device), test)
    feature_seconds = time.perf_counter() - start
    trainers = [make_unit(cfg, cat, seed, *splits[cat], device) for cat, seed in units]
    first_epoch = 1
    if resume_state is not None:
        for unit, state in zip(trainers, resume_state["units"], strict=True):
            unit.load_state_dict(state)
        first_epoch = resume_state["epoch"] + 1
    *earlier, last = get_method(cfg.method).stages(cfg)

    def state() -> dict:
        return {"epoch": trainers[0].epoch, "units": [u.state_dict() for u in trainers]}

    on_stage_end = None
    if stage_callback is not None:
        on_stage_end = functools.partial(stage_callback, state=state)
    _run_earlier_stages(trainers, earlier, progress, on_stage_end)

    maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    rows: list[dict] = []

    def on_epoch(epoch: int, loss: float) -> dict[str, float]:
        nonlocal rows
        metrics = {"loss": loss}
        if epoch % cfg.optim.eval_every == 0 or epoch == last.epochs:
            rows = _evaluate(trainers, maps)
            metrics.update(_summarise(rows))
        if callback is not None:
            callback(EpochReport(epoch, metrics, state))
        return metrics

    _run_stage(trainers, range(first_epoch, last.epochs + 1), last.name, progress, on_epoch)
    if not rows:  # resumed after the last epoch: evaluate what was restored
        rows = _evaluate(trainers, maps)
    _add_thresholds(cfg, trainers, rows, maps)
    summary = _summarise(rows)
    summary.update(_summarise_f1(rows))
    result = {
        "metrics": summary,
        "units": rows,
        "train_seconds": sum(u.train_seconds for u in trainers),
        "eval_seconds": sum(r["eval_seconds"] for r in rows),
        "feature_seconds": feature_seconds,
        "epochs": last.epochs,
        **peak_memory_mb(device),
        "fingerprint": fingerprint,
    }
    if out_dir is not None:
        write_outputs(Path(out_dir), cfg, result, trainers, maps)
    return result


def _add_thresholds(cfg: TrainConfig, trainers, rows: list[dict], maps: dict) -> None:
    """Per unit: the threshold of cfg.threshold on its selection images, the F1 there."""
    for unit, row in zip(trainers, rows, strict=True):
        scores, unit_maps = maps[unit.name]
        chosen = choose_threshold(scores, unit.test.labels, cfg.threshold, THRESHOLD_SOURCE)
        row["threshold"] = chosen.to_dict()
        row["image_f1"] = chosen.f1
        row["map_range"] = [float(unit_maps.min()), float(unit_maps.max())]


def _summarise_f1(rows: list[dict]) -> dict[str, float]:
    """Mean F1 at the stored thresholds, overall and per category."""
    out = {"image_f1": float(np.mean([r["image_f1"] for r in rows]))}
    for cat in dict.fromkeys(r["category"] for r in rows):
        out[f"{cat}/image_f1"] = float(
            np.mean([r["image_f1"] for r in rows if r["category"] == cat])
        )
    return out


def write_scores(path: Path, split: CachedSplit, scores: np.ndarray) -> None:
    """The image scores behind the metrics: path, label (1 = defective), score."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "score"])
        writer.writerows(
            [p, int(label), repr(float(s))]
            for p, label, s in zip(split.paths, split.labels, scores, strict=True)
        )


def write_outputs(out: Path, cfg: TrainConfig, result: dict, trainers, maps: dict) -> None:
    """metrics.json, config.yaml, fingerprint.json, checkpoint.pt (dhkd/weights.py), the image
    scores (scores_<category>_s<seed>.csv), map grids."""
    out.mkdir(parents=True, exist_ok=True)
    skip = ("metrics", "fingerprint")
    flat = {**result["metrics"], **{k: v for k, v in result.items() if k not in skip}}
    (out / "metrics.json").write_text(json.dumps(flat, indent=2))
    (out / FINGERPRINT_FILE).write_text(json.dumps(result["fingerprint"], indent=2))
    dump_config(cfg, out / "config.yaml")
    units = [
        {
            "category": u.category,
            "seed": u.seed,
            "model": u.model.state_dict(),
            "shapes": [list(s) for s in u.train.shapes],
            "threshold": row["threshold"],
            "map_range": row["map_range"],
        }
        for u, row in zip(trainers, result["units"], strict=True)
    ]
    save_weights(
        weights_dict(cfg.model_dump(mode="json"), result["fingerprint"], units), out / WEIGHTS_FILE
    )
    for unit in trainers:
        write_scores(
            out / f"scores_{unit.category}_s{unit.seed}.csv", unit.test, maps[unit.name][0]
        )
        save_map_grid(
            unit.test.images,
            unit.test.masks,
            maps[unit.name][1],
            unit.test.labels,
            out / f"maps_{unit.category}_s{unit.seed}.png",
            title=f"{cfg.method.upper()} - {unit.category} (seed {unit.seed})",
        )


def fit(
    cfg: TrainConfig,
    data_root: str | Path,
    category: str,
    out_dir: str | Path | None,
    *,
    callback: Callable[[EpochReport], None] | None = None,
    progress: bool = True,
    feature_cache: FeatureCache | None = None,
) -> dict:
    """One category, seed = cfg.seed; see fit_units."""
    return fit_units(
        cfg,
        data_root,
        [(category, cfg.seed)],
        callback=callback,
        out_dir=out_dir,
        progress=progress,
        feature_cache=feature_cache,
    )
