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
from dhkd.data.defects import DEFECTS_VERSION
from dhkd.data.index import index_category
from dhkd.data.selection import (
    load_test,
    load_train,
    load_validation,
    plan_selection,
    protocol_label,
)
from dhkd.errors import DataError
from dhkd.features import CachedSplit, FeatureCache, default_feature_cache
from dhkd.fingerprint import run_fingerprint
from dhkd.methods.info import Stage
from dhkd.methods.registry import get_method, make_unit
from dhkd.metrics import evaluate_maps
from dhkd.runs.layout import RunFolder
from dhkd.threshold import choose_threshold, rates
from dhkd.viz import save_map_grid
from dhkd.weights import save_weights, weights_dict

METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")
VAL, TEST = "val/", "test/"  # key prefixes: validation (every evaluation) and test (once)
TRAIN_LOSS = "train/loss"


class EpochReport(NamedTuple):
    epoch: int  # 1-based epoch of the last (evaluated) stage just finished
    metrics: dict[str, float]  # "train/loss"; at evaluation epochs also "val/..." metrics
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


def _check_evaluated(category: str, split: CachedSplit, role: str) -> None:
    if not (split.labels == 1).any() or not (split.labels == 0).any():
        raise DataError(
            f"category '{category}' needs both good and defective {role} images to be evaluated "
            f"(found {int((split.labels == 0).sum())} good, {int((split.labels == 1).sum())} "
            "defective); add test/good and test/<defect> images"
        )
    defective_masks = split.masks[split.labels == 1].reshape((split.labels == 1).sum(), -1)
    if not defective_masks.any(axis=1).all():
        raise DataError(
            f"category '{category}': some defective {role} images have empty masks; "
            "run `dhkd data check` to list them"
        )


class CategoryData:
    """One category's train and validation features under cfg.selection; the test features
    are read on the first call of `test()` (after training, except under protocol `test`).
    `with_train=False` leaves `train` None, for scoring a model already trained: its
    score.level_norm divisors are in its weights, so its train images are not read."""

    def __init__(
        self, cfg: TrainConfig, root: Path, category: str, cache, device, with_train: bool = True
    ) -> None:
        self.cfg, self.root, self.category = cfg, root, category
        self.cache, self.device = cache, device
        self.plan = plan_selection(
            index_category(root, category), cfg.selection, cfg.data.max_train_images
        )
        labels = {s.label for s in self.plan.test}
        if labels != {0, 1}:
            found = "defective" if 1 in labels else "good"
            raise DataError(
                f"category '{category}' needs both good and defective test images to be "
                f"evaluated (its test split has {found} images only); add test/good and "
                "test/<defect> images"
            )
        size = cfg.data.image_size
        synthetic = cfg.selection.protocol == "synthetic"
        held_out = cfg.selection.model_dump() if synthetic else None
        self.train: CachedSplit | None = None
        if with_train:
            self.train = cache.features(
                cfg,
                load_train(self.plan, size),
                self._ident("train", held_out=held_out, max_train_images=cfg.data.max_train_images),
                device,
            )
        validation = self._ident("validation", selection=cfg.selection.model_dump())
        if synthetic:
            validation["defects"] = DEFECTS_VERSION
        self.validation = cache.features(cfg, load_validation(self.plan, size), validation, device)
        _check_evaluated(category, self.validation, "validation")
        self._test: CachedSplit | None = None

    def _ident(self, split: str, **more) -> dict:
        return {"root": str(self.root), "category": self.category, "split": split, **more}

    def test(self) -> CachedSplit:
        if self.plan.validation_is_test:
            return self.validation
        if self._test is None:
            sel = self.cfg.selection
            fold = sel.model_dump() if sel.protocol == "test_fold" else None
            ident = self._ident("test", fold=fold)
            data = load_test(self.plan, self.cfg.data.image_size)
            self._test = self.cache.features(self.cfg, data, ident, self.device)
            _check_evaluated(self.category, self._test, "test")
        return self._test


def feature_threads(data: dict[str, CategoryData]) -> dict[str, int | None]:
    """{"<category>/<split>": CPU threads its features were computed with} (split train,
    validation, test), for the fingerprint: `dhkd reproduce` recomputes them the same way."""
    out = {}
    for cat, d in data.items():
        for split, cached in (("train", d.train), ("validation", d.validation), ("test", d.test())):
            out[f"{cat}/{split}"] = cached.threads
    return out


def _summarise(per_unit: list[dict], prefix: str) -> dict[str, float]:
    """Means over all units ("<prefix><metric>"), and per category over its seeds
    ("<prefix><category>/<metric>")."""
    out: dict[str, float] = {}
    for metric in METRICS:
        out[f"{prefix}{metric}"] = float(np.mean([u[metric] for u in per_unit]))
        for cat in dict.fromkeys(u["category"] for u in per_unit):
            vals = [u[metric] for u in per_unit if u["category"] == cat]
            out[f"{prefix}{cat}/{metric}"] = float(np.mean(vals))
    return out


def _evaluate(
    units, splits: dict[str, CachedSplit], maps_out: dict, calibrate: bool = True
) -> list[dict]:
    """Each unit on its category's split in `splits`; maps_out[unit.name] = (scores, maps).
    calibrate: first set score.level_norm's divisors for the model as it is now (the test
    evaluation, which follows the last validation one, keeps them)."""
    rows = []
    for unit in units:
        start = time.perf_counter()
        if calibrate:
            unit.calibrate_levels()
        split = splits[unit.category]
        scores, maps = unit.predict(split)
        values = evaluate_maps(maps, split.masks, image_scores=scores)
        maps_out[unit.name] = (scores, maps)
        rows.append(
            {
                "category": unit.category,
                "seed": unit.seed,
                **{m: float(values[m]) for m in METRICS},
                "eval_seconds": time.perf_counter() - start,
            }
        )
    return rows


def _run_stage(units, epochs: range, stage: Stage, progress: bool, on_epoch=None) -> list[float]:
    """Run `stage` for `epochs`; returns its epoch losses (mean over units). Progress: a bar on
    a terminal; one line per epoch where stderr is not one (a log file, `ray job submit`),
    instead of carriage-return updates."""
    interactive = progress and sys.stderr.isatty()
    bar = tqdm(epochs, desc=stage.name, disable=not interactive, leave=False, unit="epoch")
    history = []
    for epoch in bar:
        losses = []
        for unit in units:
            start = time.perf_counter()
            losses.append(unit.run_epoch(stage.name, epoch))
            unit.train_seconds += time.perf_counter() - start
        loss = float(np.mean(losses))
        history.append(loss)
        shown = {f"train/{stage.loss}": loss}
        if on_epoch is not None:
            shown = on_epoch(epoch, loss)
        means = {k.split("/")[1]: v for k, v in shown.items() if k.count("/") == 1}
        values = {k: f"{v:.4f}" for k, v in means.items()}
        if interactive:
            bar.set_postfix(values)
        elif progress:
            text = " ".join(f"{k}={v}" for k, v in values.items())
            print(f"[{stage.name}] epoch {epoch}/{epochs[-1]} {text}", file=sys.stderr, flush=True)
    return history


def _run_earlier_stages(
    trainers, stages: list[Stage], progress: bool, losses: dict[str, list[float]], on_stage_end=None
) -> None:
    """Every stage before the last, each to its end unless every unit finished it already;
    its epoch losses go to losses["train/<stage.loss>"]; on_stage_end(name) after each stage
    that ran (so that it can be checkpointed)."""
    for stage in stages:
        if not all(u.stage_done(stage.name) for u in trainers):
            history = _run_stage(trainers, range(1, stage.epochs + 1), stage, progress)
            losses[f"train/{stage.loss}"] = history
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
    """Train every (category, seed) unit of `cfg`: evaluated on the validation split of
    cfg.selection every optim.eval_every epochs, and on the test split once, at the end.

    callback gets an EpochReport per epoch of the last stage; stage_callback(name, state) is
    called when an earlier stage (dhkd's teacher) has run to its end, with the function that
    returns the training state (epoch 0), so that a resumed run does not train that stage again.

    Returns {"metrics" ("val/..." and "test/..." keys), "units", "selection", "train_seconds",
    "eval_seconds" (the last validation pass and the test pass), "monitor_seconds" (the
    validation passes of earlier epochs, every optim.eval_every), "feature_seconds",
    "peak_rss_mb", ["peak_gpu_mb"], "epochs", "stage_losses" (per earlier stage,
    "train/<loss>": its epoch losses, e.g. dhkd's train/teacher_nll)}.
    """
    if not units:
        raise DataError("no (category, seed) units to train")
    seed_everything(cfg.seed)
    device = resolve_device(cfg.optim.device)
    fingerprint = run_fingerprint(data_root, units, device)
    cache = feature_cache or default_feature_cache()
    start = time.perf_counter()
    data = {
        cat: CategoryData(cfg, Path(data_root), cat, cache, device)
        for cat in dict.fromkeys(c for c, _ in units)
    }
    feature_seconds = time.perf_counter() - start
    trainers = [make_unit(cfg, cat, seed, data[cat].train, device) for cat, seed in units]
    first_epoch = 1
    stage_losses: dict[str, list[float]] = {}  # the earlier stages' epoch losses
    if resume_state is not None:
        for unit, state in zip(trainers, resume_state["units"], strict=True):
            unit.load_state_dict(state)
        first_epoch = resume_state["epoch"] + 1
        stage_losses.update(resume_state.get("stage_losses", {}))
    *earlier, last = get_method(cfg.method).stages(cfg)

    def state() -> dict:
        units_state = [u.state_dict() for u in trainers]
        return {"epoch": trainers[0].epoch, "units": units_state, "stage_losses": stage_losses}

    on_stage_end = None
    if stage_callback is not None:
        on_stage_end = functools.partial(stage_callback, state=state)
    _run_earlier_stages(trainers, earlier, progress, stage_losses, on_stage_end)

    validation = {cat: d.validation for cat, d in data.items()}
    val_maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    val_rows: list[dict] = []
    monitor_seconds = 0.0  # validation passes before the last epoch (the learning curve)

    def on_epoch(epoch: int, loss: float) -> dict[str, float]:
        nonlocal val_rows, monitor_seconds
        metrics = {TRAIN_LOSS: loss}
        if epoch % cfg.optim.eval_every == 0 or epoch == last.epochs:
            val_rows = _evaluate(trainers, validation, val_maps)
            if epoch != last.epochs:
                monitor_seconds += sum(r["eval_seconds"] for r in val_rows)
            metrics.update(_summarise(val_rows, VAL))
        if callback is not None:
            callback(EpochReport(epoch, metrics, state))
        return metrics

    _run_stage(trainers, range(first_epoch, last.epochs + 1), last, progress, on_epoch)
    if not val_rows:  # resumed after the last epoch: evaluate what was restored
        val_rows = _evaluate(trainers, validation, val_maps)
    test = {cat: d.test() for cat, d in data.items()}  # the first read of the test images
    fingerprint["feature_threads"] = feature_threads(data)
    if cfg.selection.protocol == "test":
        test_rows, test_maps = val_rows, val_maps
    else:
        test_maps = {}
        test_rows = _evaluate(trainers, test, test_maps, calibrate=False)
    rows = [
        {
            **t,
            "val": {m: v[m] for m in METRICS},
            "train_seconds": unit.train_seconds,
            "eval_seconds": t["eval_seconds"] + (v["eval_seconds"] if v is not t else 0.0),
        }
        for unit, t, v in zip(trainers, test_rows, val_rows, strict=True)
    ]
    _add_thresholds(cfg, trainers, rows, validation, val_maps, test, test_maps)
    result = {
        "metrics": {
            **_summarise(val_rows, VAL),
            **_summarise(test_rows, TEST),
            **_summarise_f1(rows),
        },
        "units": rows,
        "selection": selection_info(cfg),
        "train_seconds": sum(u.train_seconds for u in trainers),
        "eval_seconds": sum(r["eval_seconds"] for r in rows),
        "monitor_seconds": monitor_seconds,
        "feature_seconds": feature_seconds,
        "epochs": last.epochs,
        "stage_losses": stage_losses,
        **peak_memory_mb(device),
        "fingerprint": fingerprint,
    }
    if out_dir is not None:
        write_outputs(Path(out_dir), cfg, result, trainers, test, test_maps)
    return result


def _add_thresholds(cfg: TrainConfig, trainers, rows, validation, val_maps, test, test_maps):
    """Per unit: the threshold of cfg.threshold chosen on its validation images (with their
    F1) and the F1 of that threshold on the test images; the map range of the validation maps."""
    source = "test" if cfg.selection.protocol == "test" else "validation"
    for unit, row in zip(trainers, rows, strict=True):
        scores, maps = val_maps[unit.name]
        labels = validation[unit.category].labels
        chosen = choose_threshold(scores, labels, cfg.threshold, source)
        row["threshold"] = chosen.to_dict()
        row["val"]["image_f1"] = chosen.f1
        test_scores = test_maps[unit.name][0]
        row["image_f1"] = rates(test_scores, test[unit.category].labels, chosen.value)["f1"]
        row["map_range"] = [float(maps.min()), float(maps.max())]


def _summarise_f1(rows: list[dict]) -> dict[str, float]:
    """Mean F1 at the stored thresholds on the validation and the test images, overall and per
    category."""
    out = {}
    for prefix, get in ((VAL, lambda r: r["val"]["image_f1"]), (TEST, lambda r: r["image_f1"])):
        out[f"{prefix}image_f1"] = float(np.mean([get(r) for r in rows]))
        for cat in dict.fromkeys(r["category"] for r in rows):
            vals = [get(r) for r in rows if r["category"] == cat]
            out[f"{prefix}{cat}/image_f1"] = float(np.mean(vals))
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


def selection_info(cfg: TrainConfig) -> dict:
    """What chose and what reported the numbers of a run (metrics.json "selection")."""
    sel = cfg.selection
    return {**sel.model_dump(), "label": protocol_label(sel.protocol)}


def write_outputs(
    out: Path, cfg: TrainConfig, result: dict, trainers, test: dict[str, CachedSplit], maps: dict
) -> None:
    """metrics.json, config.yaml, fingerprint.json, checkpoint.pt (dhkd/weights.py), the test
    image scores (scores_<category>_s<seed>.csv), test map grids; maps[unit] = (scores, maps)."""
    out.mkdir(parents=True, exist_ok=True)
    run = RunFolder(out)
    skip = ("metrics", "fingerprint")
    flat = {**result["metrics"], **{k: v for k, v in result.items() if k not in skip}}
    run.metrics.write_text(json.dumps(flat, indent=2))
    run.fingerprint.write_text(json.dumps(result["fingerprint"], indent=2))
    dump_config(cfg, run.config)
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
        weights_dict(cfg.model_dump(mode="json"), result["fingerprint"], units), run.checkpoint
    )
    for unit in trainers:
        split = test[unit.category]
        scores, unit_maps = maps[unit.name]
        write_scores(run.scores(unit.category, unit.seed), split, scores)
        save_map_grid(
            split.images,
            split.masks,
            unit_maps,
            split.labels,
            run.maps(unit.category, unit.seed),
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
