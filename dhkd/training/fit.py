"""Train and evaluate a method on (category, seed) units: `fit_units` (several units in lockstep,
as a study trial trains them) and `fit`, the single-category entry point of `dhkd train`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from dhkd.config import TrainConfig
from dhkd.errors import DataError
from dhkd.features import FeatureCache, default_feature_cache
from dhkd.fingerprint import run_fingerprint
from dhkd.methods.registry import make_unit
from dhkd.runs.layout import RunFolder
from dhkd.training.data import feature_threads, load_categories
from dhkd.training.evaluate import evaluate_run, selection_info
from dhkd.training.loop import EpochReport, StageLoop
from dhkd.training.outputs import write_outputs
from dhkd.training.result import FitResult
from dhkd.training.runtime import peak_memory_mb, resolve_device, seed_everything


def fit_units(
    cfg: TrainConfig,
    data_root: str | Path,
    units: Sequence[tuple[str, int]],
    *,
    callback: Callable[[EpochReport], None] | None = None,
    stage_callback: Callable[..., None] | None = None,
    resume_state: dict | None = None,
    out_dir: str | Path | None = None,
    feature_cache: FeatureCache | None = None,
    progress: bool = True,
) -> FitResult:
    """Train every (category, seed) unit of `cfg`: evaluated on the validation split of
    cfg.selection every optim.eval_every epochs, and on the test split once, at the end.
    callback and stage_callback: see loop.StageLoop; resume_state: a training state of
    StageLoop.state(); out_dir: the run folder to write (outputs.write_outputs)."""
    if not units:
        raise DataError("no (category, seed) units to train")
    seed_everything(cfg.seed)
    device = resolve_device(cfg.optim.device)
    fingerprint = run_fingerprint(data_root, units, device)
    cache = feature_cache or default_feature_cache()
    data, feature_seconds = load_categories(cfg, data_root, units, cache, device)
    trainers = [make_unit(cfg, cat, seed, data[cat].train, device) for cat, seed in units]
    validation = {cat: d.validation for cat, d in data.items()}
    loop = StageLoop(
        cfg,
        trainers,
        validation,
        callback=callback,
        stage_callback=stage_callback,
        progress=progress,
    )
    if resume_state is not None:
        loop.restore(resume_state)
    trained = loop.run()
    test = {cat: d.test() for cat, d in data.items()}  # the first read of the test images
    fingerprint["feature_threads"] = feature_threads(data)
    evaluation = evaluate_run(cfg, trainers, validation, trained.val_rows, trained.val_maps, test)
    memory = peak_memory_mb(device)
    result = FitResult(
        metrics=evaluation.metrics,
        units=evaluation.rows,
        selection=selection_info(cfg),
        train_seconds=sum(u.train_seconds for u in trainers),
        eval_seconds=sum(r["eval_seconds"] for r in evaluation.rows),
        monitor_seconds=trained.monitor_seconds,
        feature_seconds=feature_seconds,
        epochs=trained.epochs,
        stage_losses=trained.stage_losses,
        peak_rss_mb=memory["peak_rss_mb"],
        peak_gpu_mb=memory.get("peak_gpu_mb"),
        fingerprint=fingerprint,
    )
    if out_dir is not None:
        write_outputs(RunFolder(Path(out_dir)), cfg, result, trainers, test, evaluation.maps)
    return result


def fit(
    cfg: TrainConfig,
    data_root: str | Path,
    category: str,
    out_dir: str | Path | None,
    *,
    callback: Callable[[EpochReport], None] | None = None,
    progress: bool = True,
    feature_cache: FeatureCache | None = None,
) -> FitResult:
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
