"""The Tune trainable: one trial = one configuration trained on every (category, seed) unit.

Runs inside a Ray worker and uses only ray.tune.* (tune.report / tune.get_checkpoint /
tune.Checkpoint): ray.train.report raises inside Tune. It never talks to MLflow or Optuna;
the driver does (creation races and RUNNING runs of stopped trials come from doing it here).

Per student epoch it reports {"epoch", "train/loss", ["val/..." metrics, "objective"]} (the
objective is a validation metric; see objective_value) with a checkpoint
holding the torch.save'd training state, so ASHA can stop it and an interrupted or retried
trial continues from its last epoch. When an earlier stage (dhkd's flow teacher) ends it reports
{"stage_done": name, "stage_losses": JSON of its epoch losses} (no epoch; the driver logs the
losses, e.g. train/teacher_nll, one point per teacher epoch) with a checkpoint of the state after
that stage, so a trial interrupted before its first student epoch does not train its teacher again.
After fit_units returns it reports the final metrics (the test metrics "test/...", read once,
among them) with `finished: 1` and a checkpoint that also holds the artifacts (metrics.json,
config.yaml, fingerprint.json, the weights checkpoint.pt, anomaly-map grids) the driver logs to
MLflow (the weights as the spec's keep_weights says). Every report also names the Ray node the
attempt runs on (`node_id`), so the driver can record where each trial ran, and where a retry
went, and what this attempt used so far (`train/compute_s` wall seconds, `cpu_s` CPU seconds,
an `attempt` id and the `device` name), so the driver can account for compute.
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dhkd.study.state.outcome import (
    ATTEMPT,
    COMPUTE_S,
    CPU_S,
    DEVICE,
    EPOCH,
    FINISHED,
    OBJECTIVE,
    PARAMS,
    UNITS,
)

NODE_ID = "node_id"  # result key: hex id of the Ray node this attempt runs on
STAGE_DONE = "stage_done"  # result key: the earlier stage a checkpoint-only report follows
STAGE_LOSSES = "stage_losses"  # with it: JSON {"train/<loss>": [epoch losses]} of earlier stages
STATE_FILE = "state.pt"
FINAL_FILE = "final.json"
ARTIFACTS = "artifacts"


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its parameters (plain, picklable data)."""

    preset: str  # config preset of the study
    base_overrides: dict[str, Any]  # method and fixed parameters, under the trial params
    data_root: str
    units: list[tuple[str, int]]
    metric: str  # objective metric, averaged over categories
    feature_cache_dir: str | None  # None: the node's default cache; "": no cache at all
    threads: int = 1
    fit_fn: Callable | None = field(default=None)  # None: the real fit_units (tests inject)


def objective_value(metrics: dict[str, float], metric: str, categories: list[str]) -> float | None:
    """Mean of the validation metric `val/<category>/<metric>` over categories (each already a
    mean over seeds): what the searcher optimises and ASHA compares. The test metrics never
    choose (under selection protocol `test` the validation images are the test images)."""
    values = [metrics.get(f"val/{c}/{metric}") for c in categories]
    if any(v is None for v in values):
        return None
    return float(sum(values) / len(values))


@functools.lru_cache(maxsize=4)
def node_feature_cache(directory: str | None):
    """One FeatureCache per directory and worker process, so reused actors keep its memory.
    None: the node's default cache; "": none (features computed by every trial)."""
    from dhkd.features import FeatureCache, default_feature_cache

    if directory is None:
        return default_feature_cache()
    return FeatureCache(directory, max_memory_items=0 if directory == "" else 8)


def device_name(requested: str) -> str:
    """The device a trial trains on, named: "cuda: <GPU name>" or "cpu: <processor>"."""
    import platform

    from dhkd.training.runtime import resolve_device

    device = resolve_device(requested)
    if device.type == "cuda":
        import torch

        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"{device.type}: {platform.processor() or platform.machine()}"


def _report(metrics: dict[str, Any], state: dict | None, extra: Path | None = None) -> None:
    import torch
    from ray import tune

    with tempfile.TemporaryDirectory(prefix="dhkd-ckpt-") as tmp:
        if state is not None:
            torch.save(state, Path(tmp) / STATE_FILE)
        if extra is not None:
            shutil.copytree(extra, Path(tmp) / ARTIFACTS)
            (Path(tmp) / FINAL_FILE).write_text(json.dumps(metrics))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def _restore() -> tuple[dict | None, dict | None]:
    """(training state, final metrics if the trial had already finished) from Tune's checkpoint."""
    import torch
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None, None
    with checkpoint.as_directory() as folder:
        final = Path(folder) / FINAL_FILE
        if final.is_file():
            return None, json.loads(final.read_text())
        state = torch.load(Path(folder) / STATE_FILE, weights_only=True)
    return state, None


def _quiet_exit_hook(default: Callable[[Any], None]) -> Callable[[Any], None]:
    """An unraisable-exception hook that drops a SystemExit and passes anything else on.

    Ray's worker turns SIGTERM (sent when Tune stops a finished trial's actor or Ray shuts
    down) into SystemExit. When the signal lands while the interpreter runs a garbage-collection
    callback (a WeakSet's _remove, say), Python cannot raise it there and prints "Exception
    ignored in ... Traceback ... SystemExit" instead, which Ray forwards to the driver's
    terminal: a traceback for a worker that was told to stop and stops.
    """

    def hook(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, SystemExit):
            default(unraisable)

    hook.quiet_exit = True  # type: ignore[attr-defined]
    return hook


def install_quiet_exit_hook() -> None:
    """Install _quiet_exit_hook in this process once."""
    if not getattr(sys.unraisablehook, "quiet_exit", False):
        sys.unraisablehook = _quiet_exit_hook(sys.unraisablehook)


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    """Tune entry point: `config` = {"trial_number": n, "params": {dotted key: value}}, and
    for a top-up of an extended study "units": the (category, seed) units to train."""
    import logging

    import ray
    import torch
    from ray import tune

    from dhkd.config import load_config
    from dhkd.methods.registry import get_method

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one line per checkpoint
    install_quiet_exit_hook()
    torch.set_num_threads(max(1, context.threads))
    cfg = load_config(
        context.preset, overrides={**context.base_overrides, **config.get(PARAMS, {})}
    )
    epochs = get_method(cfg.method).final_stage(cfg).epochs
    units = [(str(c), int(s)) for c, s in config.get(UNITS) or context.units]  # UNITS: a top-up
    categories = list(dict.fromkeys(c for c, _ in units))
    state, final = _restore()
    if final is not None:  # finished before the driver lost track: report it again
        tune.report(final)
        return
    pending: dict[str, Any] = {}
    start, cpu_start = time.perf_counter(), time.process_time()
    node = ray.get_runtime_context().get_node_id()
    attempt = {ATTEMPT: uuid.uuid4().hex[:12], DEVICE: device_name(cfg.optim.device)}

    def usage() -> dict[str, Any]:
        used = {COMPUTE_S: time.perf_counter() - start, CPU_S: time.process_time() - cpu_start}
        return {**used, **attempt, NODE_ID: node}

    def callback(report) -> None:
        metrics = {EPOCH: report.epoch, **report.metrics, **usage()}
        value = objective_value(report.metrics, context.metric, categories)
        if value is not None:
            metrics[OBJECTIVE] = value
        if report.epoch >= epochs:
            pending.update(metrics)  # reported with the artifacts once fit_units returns
            return
        _report(metrics, report.state())

    def stage_callback(stage: str, state) -> None:
        snapshot = state()
        losses = json.dumps(snapshot["stage_losses"])
        _report({STAGE_DONE: stage, STAGE_LOSSES: losses, **usage()}, snapshot)

    fit = context.fit_fn
    if fit is None:
        from dhkd.training.fit import fit_units as fit
    cache = node_feature_cache(context.feature_cache_dir)
    with tempfile.TemporaryDirectory(prefix="dhkd-trial-") as out:
        result = fit(
            cfg,
            context.data_root,
            units,
            callback=callback,
            stage_callback=stage_callback,
            resume_state=state,
            out_dir=out,
            feature_cache=cache,
            progress=False,
        )
        final_metrics = {EPOCH: epochs, **pending, **result.metrics}
        value = objective_value(result.metrics, context.metric, categories)
        if value is not None:
            final_metrics[OBJECTIVE] = value
        for key in ("train_seconds", "eval_seconds", "monitor_seconds", "feature_seconds"):
            final_metrics[key] = float(getattr(result, key))
        final_metrics.update(usage())
        final_metrics[FINISHED] = 1
        _report(final_metrics, None, extra=Path(out))
