"""The stage loop: the units of a run driven in lockstep through their method's stages.

Every stage but the last runs to its end once (a resumed run skips a stage its units finished);
the last is evaluated on the validation images every optim.eval_every epochs and at its end,
and each of its epochs is reported as an EpochReport, so that a study trial can report one
number per epoch and a scheduler can stop it early.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from dhkd.config import TrainConfig
from dhkd.features import CachedSplit
from dhkd.methods.info import Stage
from dhkd.methods.registry import get_method
from dhkd.training.evaluate import VAL, Maps, evaluate_units, summarise

TRAIN_LOSS = "train/loss"


class EpochReport(NamedTuple):
    epoch: int  # 1-based epoch of the last (evaluated) stage just finished
    metrics: dict[str, float]  # "train/loss"; at evaluation epochs also "val/..." metrics
    state: Callable[[], dict]  # full training state for a checkpoint


class LoopResult(NamedTuple):
    val_rows: list[dict]  # per unit: the last validation pass (evaluate_units)
    val_maps: Maps  # the validation images' scores and maps of that pass
    monitor_seconds: float  # the validation passes before the last epoch (the learning curve)
    epochs: int  # of the last stage
    stage_losses: dict[str, list[float]]  # per earlier stage, "train/<loss>": its epoch losses


def run_stage(units, epochs: range, stage: Stage, progress: bool, on_epoch=None) -> list[float]:
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


def run_earlier_stages(
    trainers, stages: list[Stage], progress: bool, losses: dict[str, list[float]], on_stage_end=None
) -> None:
    """Every stage before the last, each to its end unless every unit finished it already;
    its epoch losses go to losses["train/<stage.loss>"]; on_stage_end(name) after each stage
    that ran (so that it can be checkpointed)."""
    for stage in stages:
        if not all(u.stage_done(stage.name) for u in trainers):
            history = run_stage(trainers, range(1, stage.epochs + 1), stage, progress)
            losses[f"train/{stage.loss}"] = history
            for unit in trainers:
                unit.finish_stage(stage.name)
            if on_stage_end is not None:
                on_stage_end(stage.name)


class StageLoop:
    """The units of a run and what the loop keeps between epochs: the earlier stages' losses,
    the last validation pass and the seconds of the validation passes before the last epoch.

    callback gets an EpochReport per epoch of the last stage; stage_callback(name, state=...)
    is called when an earlier stage (dhkd's teacher) has run to its end, with the function that
    returns the training state (epoch 0), so that a resumed run does not train that stage again.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        units: list,
        validation: dict[str, CachedSplit],
        *,
        callback: Callable[[EpochReport], None] | None = None,
        stage_callback: Callable[..., None] | None = None,
        progress: bool = True,
    ) -> None:
        self.cfg, self.units, self.validation = cfg, units, validation
        self.callback, self.stage_callback, self.progress = callback, stage_callback, progress
        *self.earlier, self.last = get_method(cfg.method).stages(cfg)
        self.first_epoch = 1
        self.stage_losses: dict[str, list[float]] = {}
        self.val_rows: list[dict] = []
        self.val_maps: Maps = {}
        self.monitor_seconds = 0.0

    def restore(self, state: dict) -> None:
        """Continue from a training state (`state()` of an earlier run)."""
        for unit, unit_state in zip(self.units, state["units"], strict=True):
            unit.load_state_dict(unit_state)
        self.first_epoch = state["epoch"] + 1
        self.stage_losses.update(state.get("stage_losses", {}))

    def state(self) -> dict:
        """The training state: {"epoch", "units": [unit state_dict()], "stage_losses"}."""
        units = [u.state_dict() for u in self.units]
        return {"epoch": self.units[0].epoch, "units": units, "stage_losses": self.stage_losses}

    def run(self) -> LoopResult:
        on_stage_end = self._stage_end if self.stage_callback is not None else None
        run_earlier_stages(self.units, self.earlier, self.progress, self.stage_losses, on_stage_end)
        epochs = range(self.first_epoch, self.last.epochs + 1)
        run_stage(self.units, epochs, self.last, self.progress, self._epoch_end)
        if not self.val_rows:  # resumed after the last epoch: evaluate what was restored
            self.val_rows = evaluate_units(self.units, self.validation, self.val_maps)
        return LoopResult(
            self.val_rows, self.val_maps, self.monitor_seconds, self.last.epochs, self.stage_losses
        )

    def _stage_end(self, name: str) -> None:
        self.stage_callback(name, state=self.state)

    def _epoch_end(self, epoch: int, loss: float) -> dict[str, float]:
        metrics = {TRAIN_LOSS: loss}
        last = self.last.epochs
        if epoch % self.cfg.optim.eval_every == 0 or epoch == last:
            self.val_rows = evaluate_units(self.units, self.validation, self.val_maps)
            if epoch != last:
                self.monitor_seconds += sum(r["eval_seconds"] for r in self.val_rows)
            metrics.update(summarise(self.val_rows, VAL))
        if self.callback is not None:
            self.callback(EpochReport(epoch, metrics, self.state))
        return metrics
