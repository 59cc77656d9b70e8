"""A category's data for training and evaluation: its train and validation features under
cfg.selection, read once through the feature cache, and its test features after training."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from dhkd.config import TrainConfig
from dhkd.data.defects import DEFECTS_VERSION
from dhkd.data.index import index_category
from dhkd.data.selection import load_test, load_train, load_validation, plan_selection
from dhkd.errors import DataError
from dhkd.features import CachedSplit, FeatureCache


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


def load_categories(
    cfg: TrainConfig,
    root: str | Path,
    units: Sequence[tuple[str, int]],
    cache: FeatureCache,
    device,
) -> tuple[dict[str, CategoryData], float]:
    """The CategoryData of every category of `units` (in order of first appearance) and the
    seconds their features took."""
    start = time.perf_counter()
    data = {
        cat: CategoryData(cfg, Path(root), cat, cache, device)
        for cat in dict.fromkeys(c for c, _ in units)
    }
    return data, time.perf_counter() - start
