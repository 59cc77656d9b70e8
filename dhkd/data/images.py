"""Loading images and masks of a `CategoryIndex` into fixed-size uint8 arrays.

Images of any size, RGB or grayscale (png, jpg, bmp) become (size, size, 3) RGB; non-square
images are resized to a square (MVTec images are square). Masks become (size, size) in {0, 1}.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from dhkd.data.index import CategoryIndex, Sample
from dhkd.errors import DataError


@dataclass(frozen=True)
class Split:
    """One loaded split of a category.

    images: uint8 (N, size, size, 3) RGB; labels: int64 (N,) with 0 good, 1 defective;
    masks: uint8 (N, size, size) in {0, 1}, all zeros for train and good images;
    paths, defects: N strings each, in the order of the arrays.
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    paths: tuple[str, ...]
    defects: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)


def read_raw(path: str | Path, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    """Decode a file with OpenCV (BGR channel order); DataError naming the file if it cannot."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)  # works for any path, unlike cv2.imread
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}; check that the file exists") from exc
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise DataError(
            f"cannot decode image {path} ({data.size} bytes); the file is empty, truncated or "
            f"not a png/jpg/bmp image: replace or remove it"
        )
    return image


def _resize(image: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    if nearest:
        interp = cv2.INTER_NEAREST
    else:
        interp = cv2.INTER_AREA if size * size < h * w else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def _check_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise DataError(f"image size must be a positive integer, got {size!r}")


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Load an image as uint8 RGB (size, size, 3).

    Grayscale becomes three equal channels, alpha is dropped, 16-bit is scaled to 8-bit.
    Resizing uses INTER_AREA when shrinking and INTER_LINEAR when enlarging.
    """
    _check_size(size)
    raw = read_raw(path, cv2.IMREAD_UNCHANGED)
    if raw.dtype == np.uint16:
        raw = (raw // 257).astype(np.uint8)
    elif raw.dtype != np.uint8:
        raise DataError(f"image {path} has unsupported pixel type {raw.dtype}; save it as 8-bit")
    if raw.ndim == 2 or raw.shape[2] == 1:
        rgb = cv2.cvtColor(raw.reshape(raw.shape[:2]), cv2.COLOR_GRAY2RGB)
    elif raw.shape[2] == 4:
        rgb = cv2.cvtColor(raw, cv2.COLOR_BGRA2RGB)
    else:
        rgb = cv2.cvtColor(raw, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(_resize(rgb, size))


def load_mask(path: Path | None, size: int) -> np.ndarray:
    """Load a mask as uint8 (size, size) in {0, 1}: any non-zero pixel is 1.

    Colour masks count a pixel as foreground if any colour channel is non-zero (alpha ignored).
    Resizing is nearest-neighbour. `path=None` (a good image) gives all zeros.
    """
    _check_size(size)
    if path is None:
        return np.zeros((size, size), dtype=np.uint8)
    raw = read_raw(path, cv2.IMREAD_UNCHANGED)
    if raw.ndim == 3:
        raw = raw[..., :3].max(axis=2) if raw.shape[2] >= 3 else raw[..., 0]
    binary = (raw > 0).astype(np.uint8)
    return np.ascontiguousarray(_resize(binary, size, nearest=True))


def select_evenly(n: int, max_images: int | None) -> list[int]:
    """Indices of at most `max_images` of `n` items, evenly spread (all when None or >= n)."""
    if max_images is None or max_images >= n:
        return list(range(n))
    if max_images < 1:
        raise DataError(f"max_images must be at least 1, got {max_images}")
    return sorted({round(i * (n - 1) / max(max_images - 1, 1)) for i in range(max_images)})


def select_stratified(groups: Sequence[str], max_images: int | None) -> list[int]:
    """Indices of at most `max_images` items, evenly spread within each group (defect type).

    Every group keeps at least one item when `max_images` >= the number of groups; the rest is
    shared in proportion to group sizes (largest remainder). Returned in the original order.
    """
    n = len(groups)
    if max_images is None or max_images >= n:
        return list(range(n))
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    if max_images < len(members):  # too few for one per group: spread over everything
        return select_evenly(n, max_images)
    sizes = {g: len(m) for g, m in members.items()}
    quota = {g: max(1, max_images * k // n) for g, k in sizes.items()}
    while sum(quota.values()) > max_images:
        g = max((g for g in quota if quota[g] > 1), key=lambda g: quota[g])
        quota[g] -= 1
    while sum(quota.values()) < max_images:
        room = [g for g in quota if quota[g] < sizes[g]]
        g = max(room, key=lambda g: max_images * sizes[g] / n - quota[g])
        quota[g] += 1
    chosen = [members[g][j] for g in members for j in select_evenly(sizes[g], quota[g])]
    return sorted(chosen)


def load_split(
    index: CategoryIndex,
    split: Literal["train", "test"],
    size: int,
    max_images: int | None = None,
) -> Split:
    """Load the train or test split of a category at `size` x `size`.

    `max_images` caps the number of images: evenly spread within each defect type, and every
    type keeps at least one image when the cap allows (see `select_stratified`).
    """
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    _check_size(size)
    samples: tuple[Sample, ...] = getattr(index, split)
    chosen = [samples[i] for i in select_stratified([s.defect for s in samples], max_images)]
    return load_samples(chosen, size)


def load_samples(samples: Sequence[Sample], size: int) -> Split:
    """Read `samples` (images, and masks of the defective ones) at `size` x `size`, in order."""
    _check_size(size)
    n = len(samples)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    for i, sample in enumerate(samples):
        images[i] = load_image(sample.path, size)
        if sample.label == 1:
            masks[i] = load_mask(sample.mask_path, size)
    return Split(
        images=images,
        labels=np.array([s.label for s in samples], dtype=np.int64),
        masks=masks,
        paths=tuple(str(s.path) for s in samples),
        defects=tuple(s.defect for s in samples),
    )
