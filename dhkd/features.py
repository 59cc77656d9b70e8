"""Frozen-backbone features, computed once per (dataset, category, split, backbone, image size).

Every trial of a study on a node shares them: an in-process LRU of recent entries plus a disk
cache (one .pt file per key, written atomically under a file lock so that concurrent trials
compute a key once). The key hashes the dataset's file list (names, sizes, mtimes) so that a
changed dataset is never served stale features. Each entry keeps the number of CPU threads that
computed it: a convolution's rounding can depend on it, so `dhkd reproduce` recomputes features
with the same count (FeatureCache(threads=...)).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from dhkd.data.images import Split, load_split
from dhkd.data.index import index_category
from dhkd.models.backbone import FeatureExtractor, build_backbone
from dhkd.sections import TrainConfig

CACHE_VERSION = 1


@dataclass(frozen=True)
class CachedSplit:
    """One split of one category: backbone features and the images/masks they came from."""

    features: list[torch.Tensor]  # per level (N, C_l, H_l, W_l) float16
    images: np.ndarray  # uint8 (N, S, S, 3)
    labels: np.ndarray  # int64 (N,)
    masks: np.ndarray  # uint8 (N, S, S) in {0, 1}
    paths: tuple[str, ...]
    # CPU threads the features were computed with (the backbone's float rounding, hence the
    # float16 values, can depend on them); None where unknown (a cache file from before)
    threads: int | None = None

    @property
    def shapes(self) -> list[tuple[int, int, int]]:
        return [tuple(f.shape[1:]) for f in self.features]


def _backbone_identity(cfg: TrainConfig) -> dict:
    bb = cfg.backbone
    ident = {"name": bb.name, "levels": sorted(bb.levels), "pretrained": bb.pretrained}
    if bb.weights:
        path = Path(bb.weights)
        ident["weights"] = [str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns]
    return ident


def _stat(path: str) -> list:
    """[name, size, mtime] of a file; a synthetic twin ("<file>#synthetic") uses its source's."""
    real = Path(path.split("#", 1)[0])
    return [Path(path).name, real.stat().st_size, real.stat().st_mtime_ns]


def cache_key(cfg: TrainConfig, ident: dict, paths: list[str]) -> str:
    """`ident` names the images (root, category, split and how it was chosen); the key adds the
    backbone, the image size and the file listing (names, sizes, mtimes)."""
    full = {
        "version": CACHE_VERSION,
        **ident,
        "root": str(Path(ident["root"]).resolve()),
        "image_size": cfg.data.image_size,
        "backbone": _backbone_identity(cfg),
        "files": [_stat(p) for p in paths],
    }
    digest = hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:20]
    name = f"{ident['category']}-{ident['split']}-{cfg.backbone.name}"
    return f"{name}-{cfg.data.image_size}px-{digest}"


def frozen_backbone(cfg: TrainConfig, device: torch.device) -> FeatureExtractor:
    """The backbone whose features the cache holds; random init (tests) is seeded with 0 so
    that it is the same in every process."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_backbone(cfg.backbone).to(device)


@torch.no_grad()
def extract_features(
    cfg: TrainConfig, images: np.ndarray, device: torch.device, batch_size: int = 16
) -> list[torch.Tensor]:
    """uint8 (N, S, S, 3) -> per level (N, C_l, H_l, W_l) float16 on the CPU."""
    backbone = frozen_backbone(cfg, device)
    chunks: list[list[torch.Tensor]] = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start : start + batch_size]).to(device)
        batch = batch.permute(0, 3, 1, 2).float() / 255.0
        chunks.append([f.half().cpu() for f in backbone(batch)])
    return [torch.cat(level) for level in zip(*chunks, strict=True)]


class FeatureCache:
    """Memory LRU + disk cache of CachedSplit features; see the module docstring."""

    def __init__(
        self,
        directory: str | Path | None = None,
        max_memory_items: int = 8,
        threads: dict[str, int] | None = None,
    ) -> None:
        """threads: {"<category>/<split>": n} computes those splits' features with n CPU
        threads (as a logged run's fingerprint records them); others use the current count.
        Entries found in the cache keep the count that computed them (CachedSplit.threads)."""
        if directory is None:
            directory = os.environ.get("DHKD_FEATURE_CACHE") or Path.home() / ".cache/dhkd/features"
        self.directory = Path(directory) if str(directory) else None
        self.max_memory_items = max_memory_items
        self.threads = dict(threads or {})
        self._memory: OrderedDict[str, CachedSplit] = OrderedDict()
        self.stats = {"hits_memory": 0, "hits_disk": 0, "misses": 0, "seconds_computing": 0.0}

    def get(
        self,
        cfg: TrainConfig,
        data_root: str | Path,
        category: str,
        split: str,
        device: torch.device | None = None,
    ) -> CachedSplit:
        """All of a category's train or test split (train capped by data.max_train_images)."""
        index = index_category(Path(data_root), category)
        max_images = cfg.data.max_train_images if split == "train" else None
        data = load_split(index, split, cfg.data.image_size, max_images=max_images)
        ident = {"root": str(data_root), "category": category, "split": split}
        ident["max_train_images"] = max_images
        return self.features(cfg, data, ident, device)

    def features(
        self, cfg: TrainConfig, data: Split, ident: dict, device: torch.device | None = None
    ) -> CachedSplit:
        """Features of the loaded images `data`; `ident` (with at least root, category and
        split) says how they were chosen, for the cache key."""
        key = cache_key(cfg, ident, list(data.paths))
        if key in self._memory:
            self._memory.move_to_end(key)
            self.stats["hits_memory"] += 1
            return self._memory[key]
        threads = self.threads.get(f"{ident['category']}/{ident['split']}")
        features, threads = self._load_or_compute(
            key, cfg, data.images, device or torch.device("cpu"), threads
        )
        entry = CachedSplit(features, data.images, data.labels, data.masks, data.paths, threads)
        self._memory[key] = entry
        while len(self._memory) > self.max_memory_items:
            self._memory.popitem(last=False)
        return entry

    def _load_or_compute(
        self, key: str, cfg, images, device, threads: int | None
    ) -> tuple[list[torch.Tensor], int | None]:
        """(features, the CPU threads that computed them)."""
        if self.directory is None:
            return self._compute(cfg, images, device, threads)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{key}.pt"
        with FileLock(str(path) + ".lock"):
            if path.is_file():
                self.stats["hits_disk"] += 1
                saved = torch.load(path, map_location="cpu", weights_only=True)
                return saved["features"], saved.get("threads")
            features, threads = self._compute(cfg, images, device, threads)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save({"features": features, "threads": threads}, tmp)
            os.replace(tmp, path)
        return features, threads

    def _compute(self, cfg, images, device, threads: int | None) -> tuple[list[torch.Tensor], int]:
        start = time.perf_counter()
        self.stats["misses"] += 1
        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)
        try:
            features = extract_features(cfg, images, device)
        finally:
            torch.set_num_threads(before)
        self.stats["seconds_computing"] += time.perf_counter() - start
        return features, threads or before


@functools.cache
def default_feature_cache() -> FeatureCache:
    """The process-wide cache (memory + the default disk directory)."""
    return FeatureCache()
