"""One training unit = one method on one (category, seed): its model, optimiser and RNG.

fit_units (train.py) drives units in lockstep, epoch by epoch. A unit exposes the two stages
(`teacher_epoch`, `student_epoch`), `predict` on the test split, and `state_dict` /
`load_state_dict` for checkpoints that torch.load(weights_only=True) can read.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch

from dhkd.config import TrainConfig
from dhkd.errors import TrainingError
from dhkd.features import CachedSplit
from dhkd.models.dhkd import DHKDModel, FeatureNorm


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled epoch of index batches; a trailing batch of one sample joins the previous one."""
    order = torch.randperm(n, generator=generator)
    out = list(order.split(batch_size))
    if len(out) > 1 and len(out[-1]) == 1:
        out[-2] = torch.cat([out[-2], out.pop()])
    return out


def check_finite(loss: torch.Tensor, where: str) -> float:
    value = float(loss.detach())
    if not np.isfinite(value):
        raise TrainingError(
            f"non-finite loss ({value}) in {where}; lower the learning rate (optim.lr / "
            "teacher.lr), the flow clamp (teacher.clamp) or the noise level (noise.sigma)"
        )
    return value


class UnitBase:
    """What every method's unit shares: identity, seeding, feature batches, mixed precision."""

    def __init__(
        self,
        cfg: TrainConfig,
        category: str,
        seed: int,
        train: CachedSplit,
        test: CachedSplit,
        device: torch.device,
    ) -> None:
        self.cfg, self.category, self.seed = cfg, category, seed
        self.train, self.test, self.device = train, test, device
        self.generator = torch.Generator().manual_seed(seed)  # batch order
        torch.manual_seed(seed)  # model initialisation
        np.random.seed(seed)  # FrEIA draws channel permutations from numpy's global generator
        self.stats = FeatureNorm.statistics([f.float() for f in train.features])
        self.epoch = 0
        self.train_seconds = 0.0

    @property
    def name(self) -> str:
        return f"{self.category}/seed{self.seed}"

    def _features(self, split: CachedSplit, idx: torch.Tensor) -> list[torch.Tensor]:
        """Cached float16 features of rows idx -> float32 on the unit's device."""
        return [f[idx].to(self.device, non_blocking=True).float() for f in split.features]

    def _autocast(self):
        """bfloat16 autocast for training steps on CUDA when optim.amp; no-op on the CPU."""
        if self.device.type == "cuda" and self.cfg.optim.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()


class DHKDUnit(UnitBase):
    """Flow teacher trained on NLL (stage 1), then the denoising student (stage 2)."""

    def __init__(
        self,
        cfg: TrainConfig,
        category: str,
        seed: int,
        train: CachedSplit,
        test: CachedSplit,
        device: torch.device,
    ) -> None:
        super().__init__(cfg, category, seed, train, test, device)
        self.noise_generator = torch.Generator(device=device).manual_seed(seed + 1)
        self.model = DHKDModel(train.shapes, cfg, self.stats).to(device)
        self.teacher_opt = torch.optim.Adam(self.model.teacher.parameters(), lr=cfg.teacher.lr)
        self.student_opt = torch.optim.AdamW(
            self.model.student.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay
        )
        self.teacher_done = cfg.teacher.epochs == 0

    def teacher_epoch(self, epoch: int) -> float:
        self.model.teacher.train()
        losses = []
        for idx in batches(len(self.train.labels), self.cfg.optim.batch_size, self.generator):
            loss = self.model.teacher_loss(self._features(self.train, idx))
            losses.append(check_finite(loss, f"teacher training of {self.name}, epoch {epoch}"))
            self.teacher_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.teacher.parameters(), 5.0)
            self.teacher_opt.step()
        return float(np.mean(losses))

    def finish_teacher(self) -> None:
        self.model.teacher.eval().requires_grad_(False)
        self.teacher_done = True

    def student_epoch(self, epoch: int) -> float:
        self.model.student.train()
        losses = []
        for idx in batches(len(self.train.labels), self.cfg.optim.batch_size, self.generator):
            with self._autocast():
                loss = self.model.student_loss(
                    self._features(self.train, idx), self.noise_generator
                )
            losses.append(check_finite(loss, f"student training of {self.name}, epoch {epoch}"))
            self.student_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.student_opt.step()
        self.epoch = epoch
        return float(np.mean(losses))

    @torch.no_grad()
    def predict(self, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Test split -> image scores (N,) and anomaly maps (N, S, S), float32 numpy."""
        self.model.eval()
        scores, maps = [], []
        for start in range(0, len(self.test.labels), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(self.test.labels)))
            out = self.model(self._features(self.test, idx), self.cfg.data.image_size)
            scores.append(out.pred_score.float().cpu())
            maps.append(out.anomaly_map.float().cpu())
        return torch.cat(scores).numpy(), torch.cat(maps).numpy()

    def state_dict(self) -> dict:
        return {
            "category": self.category,
            "seed": self.seed,
            "epoch": self.epoch,
            "teacher_done": self.teacher_done,
            "train_seconds": self.train_seconds,
            "model": self.model.state_dict(),
            "teacher_opt": self.teacher_opt.state_dict(),
            "student_opt": self.student_opt.state_dict(),
            "generator": self.generator.get_state(),
            "noise_generator": self.noise_generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if (state["category"], state["seed"]) != (self.category, self.seed):
            raise TrainingError(
                f"checkpoint is for {state['category']}/seed{state['seed']}, not {self.name}"
            )
        self.model.load_state_dict(state["model"])
        self.teacher_opt.load_state_dict(state["teacher_opt"])
        self.student_opt.load_state_dict(state["student_opt"])
        self.generator.set_state(state["generator"])
        self.noise_generator.set_state(state["noise_generator"])
        self.epoch, self.train_seconds = state["epoch"], state["train_seconds"]
        if state["teacher_done"]:
            self.finish_teacher()


def make_unit(cfg: TrainConfig, category: str, seed: int, train, test, device):
    """The unit class of cfg.method (DHKDUnit, or BiKDUnit from dhkd.bikd_unit)."""
    if cfg.method == "dhkd":
        return DHKDUnit(cfg, category, seed, train, test, device)
    if cfg.method == "bikd":
        from dhkd.bikd_unit import BiKDUnit  # imports this module: import lazily

        return BiKDUnit(cfg, category, seed, train, test, device)
    raise TrainingError(f"method '{cfg.method}' is not available in this build")
