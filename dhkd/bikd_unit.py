"""The training unit of method bikd: one BiKDModel on one (category, seed).

Same interface as units.DHKDUnit, driven by train.fit_units. BiKD's teacher is the frozen
ImageNet backbone, so there is no teacher stage: `teacher_done` is True from construction
(cfg.teacher.* is ignored) and fit_units goes straight to the student epochs.

The cached features are those of the clean images. When augmentation is on (bikd.augment,
bikd.augment_prob > 0, and a backward path), each batch's augmented images are passed through
the frozen backbone on the fly; the backbone is built exactly as the feature cache builds it
(features.extract_features), so clean images give the cached features.
"""

from __future__ import annotations

import numpy as np
import torch

from dhkd.config import TrainConfig
from dhkd.errors import TrainingError
from dhkd.features import CachedSplit, frozen_backbone
from dhkd.models.augment import simulate_anomalies
from dhkd.models.bikd import BiKDModel
from dhkd.units import UnitBase, batches, check_finite


def images_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, S, S, 3) -> uint8 (N, 3, S, S), contiguous, on the CPU."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


class BiKDUnit(UnitBase):
    """Forward student + reverse distiller trained together on normal images (+ augmentation)."""

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
        self.augment_generator = torch.Generator().manual_seed(seed + 1)
        self.model = BiKDModel(train.shapes, cfg, self.stats).to(device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay
        )
        self.train_images = images_tensor(train.images)
        self.test_images = images_tensor(test.images)
        b = cfg.bikd
        self.augments = b.augment and b.augment_prob > 0 and b.active_backward_weight > 0
        self.backbone = frozen_backbone(cfg, device) if self.augments else None
        self.teacher_done = True  # the teacher is the frozen backbone: nothing to train
        self.last_parts: dict[str, float] = {}

    def _images(self, images: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return images[idx].to(self.device, non_blocking=True).float() / 255.0

    def teacher_epoch(self, epoch: int) -> float:
        raise TrainingError(
            "method bikd has no teacher stage (its teacher is the frozen backbone); "
            "fit_units skips it because BiKDUnit.teacher_done is True"
        )

    def finish_teacher(self) -> None:
        self.teacher_done = True

    @torch.no_grad()
    def _augmented_features(
        self, images: torch.Tensor, clean: list[torch.Tensor]
    ) -> list[torch.Tensor] | None:
        """Teacher features of augmented copies of `images` (unchanged rows keep `clean`)."""
        b = self.cfg.bikd
        aug = simulate_anomalies(
            images,
            kind=b.augment_kind,
            prob=b.augment_prob,
            generator=self.augment_generator,
            sources=self.train_images,
            max_patches=b.augment_max_patches,
            min_size=b.augment_min_size,
            max_size=b.augment_max_size,
            min_opacity=b.augment_min_opacity,
        )
        rows = aug.chosen.nonzero().flatten()
        if len(rows) == 0:
            return None
        fresh = self.backbone(aug.images[rows])
        out = []
        for c, f in zip(clean, fresh, strict=True):
            c = c.clone()
            c[rows] = f.half().float()  # the cache stores float16: same precision as clean
            out.append(c)
        return out

    def student_epoch(self, epoch: int) -> float:
        self.model.train()
        losses, parts = [], {}
        for idx in batches(len(self.train.labels), self.cfg.optim.batch_size, self.generator):
            images = self._images(self.train_images, idx)
            clean = self._features(self.train, idx)
            augmented = self._augmented_features(images, clean) if self.augments else None
            with self._autocast():
                loss, parts = self.model.loss(images, clean, augmented)
            losses.append(check_finite(loss, f"bikd training of {self.name}, epoch {epoch}"))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.epoch = epoch
        self.last_parts = parts
        return float(np.mean(losses))

    @torch.no_grad()
    def predict(self, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Test split -> image scores (N,) and anomaly maps (N, S, S), float32 numpy."""
        self.model.eval()
        scores, maps = [], []
        for start in range(0, len(self.test.labels), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(self.test.labels)))
            out = self.model(
                self._images(self.test_images, idx),
                self._features(self.test, idx),
                self.cfg.data.image_size,
            )
            scores.append(out.pred_score.float().cpu())
            maps.append(out.anomaly_map.float().cpu())
        return torch.cat(scores).numpy(), torch.cat(maps).numpy()

    def state_dict(self) -> dict:
        return {
            "method": "bikd",
            "category": self.category,
            "seed": self.seed,
            "epoch": self.epoch,
            "teacher_done": True,
            "train_seconds": self.train_seconds,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "augment_generator": self.augment_generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("method") != "bikd":
            raise TrainingError(
                f"checkpoint of {self.name} is not a bikd checkpoint (method "
                f"{state.get('method', 'dhkd')!r}); resume with the method it was trained with"
            )
        if (state["category"], state["seed"]) != (self.category, self.seed):
            raise TrainingError(
                f"checkpoint is for {state['category']}/seed{state['seed']}, not {self.name}"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.augment_generator.set_state(state["augment_generator"])
        self.epoch, self.train_seconds = state["epoch"], state["train_seconds"]
