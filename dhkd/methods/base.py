"""What a method provides: a training unit = one method on one (category, seed).

training.fit.fit_units builds a unit per (category, seed) with the registered class of
cfg.method and its stage loop (training.loop) drives the units in lockstep through the stages of
the method's config (`cfg.stages()`): every stage but the last runs to its end once; the last
one is evaluated every `optim.eval_every` epochs and reported per epoch. A unit subclass
implements

- `build_model(shapes)`: its nn.Module from the backbone's per-level shapes [(C_l, H_l, W_l)]
  (called once by the constructor, after seeding and the feature statistics);
- `run_epoch(stage, epoch)`: one epoch of a stage, returning its mean loss;
- `level_maps(split, idx)`: per-level anomaly maps [(B, h_l, w_l)] of rows idx of an evaluated
  split (validation or test; larger = more anomalous); `predict(split)` fuses, smooths and
  pools them with the shared score settings. A unit never sees an evaluated split before
  `predict` hands it one: the test images may be read only after the last epoch;
- the class attributes `method` (its registered name), `optimizers` and `generators` (names of
  the attributes holding its optimisers and its random generators beyond `generator`) and
  `saved_stages` (earlier stages whose completion a resumed unit must know): from them the base
  class writes and restores the training state (`state_dict()` / `load_state_dict(state)`),
  which torch.load(weights_only=True) can read (tensors, numbers, strings).

Inference on new images (dhkd/inference.py) builds a unit with `for_inference`, restores the
trained model with `load_weights` and scores a split with `predict(split)`. The ONNX export
(dhkd/export.py) traces `maps_from(images, feats)`, which by default calls `self.model(feats)`;
a method whose model needs more overrides it.

Before fusion, `rescale` divides each level's map by the model's `level_scale` buffer: ones,
unless score.level_norm = train_mean, for which `calibrate_levels()` (called before every
evaluation) sets it to the level's mean over train images. Being a buffer of the model, it
travels with every checkpoint, training state and export; a checkpoint written before it
existed loads with ones, which is what it was evaluated with.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from contextlib import nullcontext
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from dhkd.errors import TrainingError
from dhkd.features import CachedSplit
from dhkd.models.anomaly_map import score_maps
from dhkd.models.norm import FeatureNorm
from dhkd.sections import TrainConfig

LEVEL_SCALE = "level_scale"
CALIBRATION_ROWS = 64  # train images whose maps set score.level_norm's divisors


def batches(
    n: int,
    batch_size: int,
    generator: torch.Generator,
    min_samples: int = 0,
    max_samples: int = 0,
) -> list[torch.Tensor]:
    """A shuffled epoch of index batches; a trailing batch of one sample joins the previous one.

    An epoch is at least `min_samples` samples (optim.min_epoch_samples): a smaller train set is
    passed over ceil(min_samples / n) times, each pass shuffled anew. It is at most
    `max_samples` (optim.max_epoch_samples, 0 = no cap): the first samples of those passes, a
    random subset of a larger train set. Both equal: an epoch is the same number of optimisation
    steps on a category of 30 images and on one of 300.
    """
    passes = max(1, -(-min_samples // n))
    order = torch.cat([torch.randperm(n, generator=generator) for _ in range(passes)])
    if max_samples:
        order = order[:max_samples]
    out = list(order.split(batch_size))
    if len(out) > 1 and len(out[-1]) == 1:
        out[-2] = torch.cat([out[-2], out.pop()])
    return out


def epoch_lr(lr: float, schedule: str, epoch: int, epochs: int) -> float:
    """The learning rate of epoch `epoch` (1-based) of a last stage of `epochs` epochs under
    optim.lr_schedule: `lr` throughout ("constant"), or a half cosine from `lr` at the first
    epoch down towards 0 ("cosine"; the last epoch trains at lr * (1 + cos(pi (E-1)/E)) / 2)."""
    if schedule == "constant":
        return lr
    return lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs))


def check_finite(loss: torch.Tensor, where: str, advice: str = "lower optim.lr") -> float:
    """The loss as a float; a TrainingError saying where and what to change if it is not finite."""
    value = float(loss.detach())
    if not np.isfinite(value):
        raise TrainingError(f"non-finite loss ({value}) in {where}; {advice}")
    return value


class MethodUnit(ABC):
    """Identity, seeding, feature statistics, feature batches, mixed precision, training state
    and prediction."""

    method: ClassVar[str]  # the registered name, written into the training state
    optimizers: ClassVar[tuple[str, ...]] = ()  # attributes holding a torch optimiser
    generators: ClassVar[tuple[str, ...]] = ()  # attributes holding a torch.Generator
    saved_stages: ClassVar[tuple[str, ...]] = ()  # earlier stages saved as "<stage>_done"

    def __init__(
        self,
        cfg: TrainConfig,
        category: str,
        seed: int,
        train: CachedSplit,
        device: torch.device,
    ) -> None:
        self.cfg, self.category, self.seed = cfg, category, seed
        self.train, self.device = train, device
        self.generator = torch.Generator().manual_seed(seed)  # batch order
        torch.manual_seed(seed)  # model initialisation
        np.random.seed(seed)  # FrEIA draws channel permutations from numpy's global generator
        self.stats = FeatureNorm.statistics([f.float() for f in train.features])
        self.epoch = 0
        self.train_seconds = 0.0
        self.done_stages: set[str] = set()
        self.model = self.build_model(train.shapes).to(device)
        self._add_level_scale(self.level_map_count(train.shapes))

    @property
    def name(self) -> str:
        return f"{self.category}/seed{self.seed}"

    @abstractmethod
    def build_model(self, shapes: list[tuple[int, int, int]]) -> nn.Module:
        """The method's model for backbone levels of shapes [(C_l, H_l, W_l)]."""

    def level_map_count(self, shapes: list[tuple[int, int, int]]) -> int:
        """How many maps `level_maps` returns: one per backbone level unless overridden."""
        return len(shapes)

    def _add_level_scale(self, count: int) -> None:
        self.model.register_buffer(LEVEL_SCALE, torch.ones(count, device=self.device))

        def ones_if_missing(module, state_dict, prefix, *args) -> None:
            state_dict.setdefault(prefix + LEVEL_SCALE, torch.ones(count))

        self.model.register_load_state_dict_pre_hook(ones_if_missing)

    @abstractmethod
    def run_epoch(self, stage: str, epoch: int) -> float:
        """One epoch (1-based) of `stage`; returns the mean training loss."""

    @abstractmethod
    def level_maps(self, split: CachedSplit, idx: torch.Tensor) -> list[torch.Tensor]:
        """Per-level anomaly maps [(B, h_l, w_l)] of rows idx of `split` (B = len(idx))."""

    def state_dict(self) -> dict:
        """Training state for resuming: identity, counters, the model's state dict, the state of
        each optimiser and generator (under its attribute name) and "<stage>_done" of each of
        `saved_stages`."""
        return {
            "method": self.method,
            "category": self.category,
            "seed": self.seed,
            "epoch": self.epoch,
            **{f"{stage}_done": self.stage_done(stage) for stage in self.saved_stages},
            "train_seconds": self.train_seconds,
            "model": self.model.state_dict(),
            **{name: getattr(self, name).state_dict() for name in self.optimizers},
            **{name: getattr(self, name).get_state() for name in ("generator", *self.generators)},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict returned. A generator the state lacks (written before the
        method used it) keeps its seeded state; the saved stages are finished last, with the
        restored model."""
        self.check_identity(state, self.method)
        self.load_weights(state["model"])
        for name in self.optimizers:
            getattr(self, name).load_state_dict(state[name])
        for name in ("generator", *self.generators):
            if name in state:
                getattr(self, name).set_state(state[name])
        self.epoch, self.train_seconds = state["epoch"], state["train_seconds"]
        for stage in self.saved_stages:
            if state[f"{stage}_done"]:
                self.finish_stage(stage)

    @classmethod
    def for_inference(
        cls,
        cfg: TrainConfig,
        category: str,
        seed: int,
        shapes: list[tuple[int, int, int]],
        model_state: dict,
        device: torch.device,
    ) -> MethodUnit:
        """A unit holding trained weights, without training data (placeholder splits)."""
        placeholder = _placeholder_split(shapes, cfg.data.image_size)
        unit = cls(cfg, category, seed, placeholder, device)
        unit.load_weights(model_state)
        unit.model.eval()
        return unit

    def load_weights(self, model_state: dict) -> None:
        """Restore the model's state dict (kept weights, not a training state)."""
        self.model.load_state_dict(model_state)

    def maps_from(self, images: torch.Tensor, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-level maps of images (B, 3, S, S) in [0, 1] with their float backbone features."""
        return self.model(feats)

    def rescale(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-level maps divided by the model's level_scale (ones unless score.level_norm)."""
        scale = getattr(self.model, LEVEL_SCALE)
        return [m / s for m, s in zip(maps, scale, strict=True)]

    @torch.no_grad()
    def calibrate_levels(self) -> None:
        """score.level_norm = train_mean: set level_scale to each level map's mean over up to
        CALIBRATION_ROWS evenly spaced train images (the model as it is now; no-op otherwise)."""
        if self.cfg.score.level_norm == "none":
            return
        self.model.eval()
        n = len(self.train.labels)
        rows = torch.linspace(0, n - 1, min(n, CALIBRATION_ROWS)).round().long().unique()
        total = None
        for idx in rows.split(self.cfg.optim.batch_size):
            sums = torch.stack(
                [m.float().mean(dim=(1, 2)).sum() for m in self.level_maps(self.train, idx)]
            )
            total = sums if total is None else total + sums
        getattr(self.model, LEVEL_SCALE).copy_((total / len(rows)).clamp_min(1e-12))

    def set_epoch_lr(self, optimizer: torch.optim.Optimizer, epoch: int) -> None:
        """Give `optimizer` the rate of last-stage epoch `epoch` (optim.lr_schedule). A function
        of the epoch alone, so a resumed run goes on with the schedule where it stopped."""
        optim = self.cfg.optim
        lr = epoch_lr(optim.lr, optim.lr_schedule, epoch, optim.epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr

    def stage_done(self, stage: str) -> bool:
        return stage in self.done_stages

    def finish_stage(self, stage: str) -> None:
        """Called once every unit ran `stage` (not the last stage) to its end."""
        self.done_stages.add(stage)

    def check_identity(self, state: dict, method: str) -> None:
        """Raise unless `state` is a `method` checkpoint of this unit's (category, seed)."""
        if state.get("method", "dhkd") != method:
            raise TrainingError(
                f"checkpoint of {self.name} is not a {method} checkpoint (method "
                f"{state.get('method', 'dhkd')!r}); resume with the method it was trained with"
            )
        if (state["category"], state["seed"]) != (self.category, self.seed):
            raise TrainingError(
                f"checkpoint is for {state['category']}/seed{state['seed']}, not {self.name}"
            )

    def epoch_batches(self, last_stage: bool = True) -> list[torch.Tensor]:
        """One epoch of shuffled index batches of the train split (optim.batch_size); an epoch
        of the last stage, the one optim.* schedules, is optim.min_epoch_samples to
        optim.max_epoch_samples samples."""
        optim = self.cfg.optim
        least, most = (optim.min_epoch_samples, optim.max_epoch_samples) if last_stage else (0, 0)
        return batches(len(self.train.labels), optim.batch_size, self.generator, least, most)

    def _features(self, split: CachedSplit, idx: torch.Tensor) -> list[torch.Tensor]:
        """Cached float16 features of rows idx -> float32 on the unit's device."""
        return [f[idx].to(self.device, non_blocking=True).float() for f in split.features]

    def _autocast(self):
        """bfloat16 autocast for training steps on CUDA when optim.amp; no-op on the CPU."""
        if self.device.type == "cuda" and self.cfg.optim.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def score(self, maps: list[torch.Tensor]):
        """Per-level maps -> the image scores and fused anomaly map (models.anomaly_map.score_maps)
        under cfg.score, each level first divided by its level_scale: what evaluation, `dhkd
        predict` and the ONNX export all score with."""
        return self.fuse(self.rescale(maps))

    def fuse(self, rescaled: list[torch.Tensor], score: dict | None = None):
        """score_maps of per-level maps already divided by their level_scale, under cfg.score
        or under `score` (its fusion_args keys), as `dhkd rescore` compares them."""
        args = self.cfg.score.fusion_args() if score is None else score
        return score_maps(rescaled, self.cfg.data.image_size, **args)

    @torch.no_grad()
    def level_map_batches(self, split: CachedSplit, batch_size: int = 32):
        """Per batch of `split`, in order, its per-level maps divided by their level_scale."""
        self.model.eval()
        n = len(split.labels)
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(start + batch_size, n))
            yield self.rescale(self.level_maps(split, idx))

    def fuse_batches(self, batches, score: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Batches of `level_map_batches` -> image scores (N,) and anomaly maps (N, S, S),
        float32 numpy, fused under cfg.score or under `score` (as in `fuse`)."""
        scores, maps = [], []
        for batch in batches:
            out = self.fuse(batch, score)
            scores.append(out.pred_score.float().cpu())
            maps.append(out.anomaly_map.float().cpu())
        return torch.cat(scores).numpy(), torch.cat(maps).numpy()

    @torch.no_grad()
    def predict(self, split: CachedSplit, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """An evaluated split -> image scores (N,) and anomaly maps (N, S, S), float32 numpy."""
        return self.fuse_batches(self.level_map_batches(split, batch_size))


def _placeholder_split(shapes: list[tuple[int, int, int]], size: int) -> CachedSplit:
    """Two all-zero rows: enough to construct a unit whose weights are then loaded."""
    return CachedSplit(
        features=[torch.zeros(2, *shape, dtype=torch.float16) for shape in shapes],
        images=np.zeros((2, size, size, 3), dtype=np.uint8),
        labels=np.zeros(2, dtype=np.int64),
        masks=np.zeros((2, size, size), dtype=np.uint8),
        paths=("", ""),
    )
