"""The training unit of method bikd: one BiKDModel on one (category, seed).

A MethodUnit (methods/base.py) driven by the stage loop (training/loop.py). BiKD's teacher is
the frozen ImageNet backbone, so there is no teacher stage: its one stage ("student") trains the
forward student and the reverse distiller together for optim.epochs.

The cached features are those of the clean images. When augmentation is on (bikd.augment,
bikd.augment_prob > 0, and a backward path), each batch's augmented images are passed through
the frozen backbone on the fly; the backbone is built exactly as the feature cache builds it
(features.extract_features), so clean images give the cached features.
"""

from __future__ import annotations

import numpy as np
import torch

from dhkd.features import CachedSplit, frozen_backbone
from dhkd.methods.base import MethodUnit, check_finite
from dhkd.methods.bikd.augment import simulate_anomalies
from dhkd.methods.bikd.model import BiKDModel
from dhkd.models.noise import add_feature_noise
from dhkd.sections import TrainConfig

ADVICE = "lower the learning rate (optim.lr) or the path weights (bikd.*_weight)"


def images_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, S, S, 3) -> uint8 (N, 3, S, S), contiguous, on the CPU."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def build_bikd_model(cfg, shapes, stats) -> BiKDModel:
    """The one place a BiKDModel's arguments are read from the config."""
    b = cfg.bikd
    return BiKDModel(
        shapes,
        stats,
        levels=cfg.backbone.levels,
        feature_norm=cfg.backbone.feature_norm,
        forward_weight=b.active_forward_weight,
        backward_weight=b.active_backward_weight,
        forward_width=b.forward_width,
        forward_mse_weight=b.forward_mse_weight,
        coupling_weight=b.coupling_weight,
        bottleneck_ratio=b.bottleneck_ratio,
        bottleneck_stride=b.bottleneck_stride,
    )


class BiKDUnit(MethodUnit):
    """Forward student + reverse distiller trained together on normal images (+ augmentation)."""

    method = "bikd"
    optimizers = ("optimizer",)
    generators = ("augment_generator", "erase_generator")

    def __init__(
        self,
        cfg: TrainConfig,
        category: str,
        seed: int,
        train: CachedSplit,
        device: torch.device,
    ) -> None:
        super().__init__(cfg, category, seed, train, device)
        self.augment_generator = torch.Generator().manual_seed(seed + 1)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay
        )
        self.train_images = images_tensor(train.images)
        b = cfg.bikd
        self.augments = b.augment and b.augment_prob > 0 and b.active_backward_weight > 0
        self.erases = b.erase_prob > 0 and b.active_backward_weight > 0
        self.erase_generator = torch.Generator().manual_seed(seed + 2)
        self.backbone = frozen_backbone(cfg, device) if self.augments else None
        self.last_parts: dict[str, float] = {}

    def build_model(self, shapes: list[tuple[int, int, int]]) -> BiKDModel:
        return build_bikd_model(self.cfg, shapes, self.stats)

    def _images(self, images: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return images[idx].to(self.device, non_blocking=True).float() / 255.0

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

    @torch.no_grad()
    def _erased(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """`feats` with bikd.erase_count patches per chosen sample replaced by noise."""
        b = self.cfg.bikd
        return add_feature_noise(
            feats,
            sigma=1.0,
            mask="patches",
            mode="replace",
            prob=b.erase_prob,
            patch_size=b.erase_size,
            patch_count=b.erase_count,
            generator=self.erase_generator,
        )

    def run_epoch(self, stage: str, epoch: int) -> float:
        self.model.train()
        self.set_epoch_lr(self.optimizer, epoch)
        losses, parts = [], {}
        for idx in self.epoch_batches():
            images = self._images(self.train_images, idx)
            clean = self._features(self.train, idx)
            augmented = self._augmented_features(images, clean) if self.augments else None
            if self.erases:
                augmented = self._erased(clean if augmented is None else augmented)
            with self._autocast():
                loss, parts = self.model.loss(images, clean, augmented)
            where = f"bikd training of {self.name}, epoch {epoch}"
            losses.append(check_finite(loss, where, ADVICE))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.epoch = epoch
        self.last_parts = parts
        return float(np.mean(losses))

    def level_maps(self, split: CachedSplit, idx: torch.Tensor) -> list[torch.Tensor]:
        images = images_tensor(split.images[idx.numpy()]).to(self.device).float() / 255.0
        return self.model(images, self._features(split, idx))

    def maps_from(self, images: torch.Tensor, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.model(images, feats)
