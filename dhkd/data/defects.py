"""Synthetic defects with exact masks, for validation images that choose without real defects.

The `synthetic` selection protocol (dhkd.data.selection) gives every held-out train/good image a
defective twin made here. Three kinds, one per twin (cycled over the held-out images):

- "texture":  a region filled with a crop of another image (flipped, colour-shifted), the
              pasted-texture anomaly of BiKD's augmentation (dhkd.methods.bikd.augment) on an
              irregular region instead of a rectangle;
- "noise":    a blob of smooth colour noise blended over the image;
- "cutpaste": a patch of the same image moved to another place (and flipped).

Regions are random polygons (7 to 10 jittered vertices) whose radius is a fraction of the image side
drawn log-uniformly from 0.04 to 0.35 (about 0.3% to 20% of the image's area, the spread of real
defects from a scratch to a missing part), centred anywhere in the frame. Version 2 drew the radius
uniformly from 0.05 to 0.12, a median of 1.2% of the area where bottle's real defects cover 5.7% and
cookie's 2.7%, so a model whose maps spread beyond a large defect lost nothing on it (the change did
not make validation rank the teacher's depth as real defects do: docs/decisions.md). Real defects
touch the border too (on textures as often as anywhere else), and a validation set that never puts
one there cannot choose a model that finds them (version 1 kept centres in the middle 60% of each
side, so no defect reached the outer 8% of the image). The mask is exactly the set of pixels the
defect changed: pixels of the region that stay identical (to the uint8 grey level) are not part of
it. Randomness comes from one numpy Generator per image, so a (seed, image) pair fixes the result.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from dhkd.errors import DataError

DefectKind = Literal["texture", "noise", "cutpaste"]
DEFECT_KINDS: tuple[DefectKind, ...] = ("texture", "noise", "cutpaste")
DEFECTS_VERSION = 3  # bump when the output for a given seed changes (feature cache keys use it)
MIN_CHANGED = 0.002  # a defect covers at least this share of the image


def _region(rng: np.random.Generator, size: int, scale: tuple[float, float]) -> np.ndarray:
    """A random polygon uint8 (size, size) in {0, 1}, centred anywhere (the frame clips it); its
    radius is a fraction of `size` drawn log-uniformly from `scale`."""
    n = int(rng.integers(7, 11))
    centre = rng.uniform(0, size, 2)
    angles = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * (2 * np.pi / n)
    fraction = np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1])))
    radius = size * fraction * rng.uniform(0.6, 1.0, n)
    poly = centre + radius[:, None] * np.stack([np.cos(angles), np.sin(angles)], 1)
    region = np.zeros((size, size), np.uint8)
    cv2.fillPoly(region, [np.round(poly).astype(np.int32)], 1, cv2.LINE_8)
    return region


def _shifted_crop(rng: np.random.Generator, source: np.ndarray, size: int) -> np.ndarray:
    """A flipped, rolled copy of `source` (size, size, 3) float32: a texture from elsewhere."""
    out = np.roll(source, tuple(int(v) for v in rng.integers(size // 4, size, 2)), axis=(0, 1))
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rng.random() < 0.5:
        out = out[::-1]
    return out


def _filler(
    kind: DefectKind, rng: np.random.Generator, image: np.ndarray, other: np.ndarray
) -> np.ndarray:
    """What the region shows, float32 (size, size, 3) in [0, 255]."""
    size = image.shape[0]
    if kind == "texture":
        fill = _shifted_crop(rng, other.astype(np.float32), size)
        return fill * rng.uniform(0.7, 1.3, 3).astype(np.float32)
    if kind == "noise":
        noise = rng.standard_normal((size, size, 3)).astype(np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), sigmaX=max(0.5, size / 96))
        noise /= max(float(noise.std()), 1e-6)
        return image.astype(np.float32) + 60.0 * noise
    return _shifted_crop(rng, image.astype(np.float32), size)


def add_defect(
    image: np.ndarray,
    other: np.ndarray,
    kind: DefectKind,
    rng: np.random.Generator,
    *,
    size_range: tuple[float, float] = (0.04, 0.35),
    opacity_range: tuple[float, float] = (0.6, 1.0),
) -> tuple[np.ndarray, np.ndarray]:
    """A defective copy of `image` and its exact mask.

    image, other: uint8 (S, S, 3); `other` is the texture source of kind "texture" (another
    good image). size_range: polygon radius as a fraction of S (drawn log-uniformly). Returns
    (defective uint8 (S, S, 3), mask uint8 (S, S) in {0, 1}); the copy equals `image` outside
    the mask.
    """
    if kind not in DEFECT_KINDS:
        raise DataError(f"unknown synthetic defect kind {kind!r}; use one of {DEFECT_KINDS}")
    if image.shape != other.shape or image.ndim != 3 or image.shape[0] != image.shape[1]:
        raise DataError(f"need two square RGB images of one size, got {image.shape}, {other.shape}")
    size = image.shape[0]
    for _ in range(20):  # redraw the rare defect that changes (almost) nothing
        region = _region(rng, size, size_range)
        alpha = rng.uniform(*opacity_range)
        fill = _filler(kind, rng, image, other)
        blended = (1 - alpha) * image.astype(np.float32) + alpha * fill
        out = np.where(region[..., None] > 0, np.clip(np.round(blended), 0, 255), image)
        out = out.astype(np.uint8)
        mask = (out != image).any(axis=-1).astype(np.uint8)
        if mask.sum() >= max(4, MIN_CHANGED * size * size):
            return out, mask
    raise DataError(
        f"could not place a visible {kind} defect on a {size}x{size} image (it is flat where "
        "every region fell); use another selection protocol for this category"
    )


def defective_twins(images: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A defective twin of each of `images` (N, S, S, 3) uint8: (twins, masks (N, S, S), kinds).

    Kinds cycle through DEFECT_KINDS; twin i takes its texture from image i + 1 (cyclically;
    itself when N is 1). Image i's generator is seeded with (seed, i).
    """
    n = len(images)
    twins, masks, kinds = np.empty_like(images), np.empty(images.shape[:3], np.uint8), []
    for i in range(n):
        kind = DEFECT_KINDS[i % len(DEFECT_KINDS)]
        rng = np.random.default_rng([seed, DEFECTS_VERSION, i])
        twins[i], masks[i] = add_defect(images[i], images[(i + 1) % n], kind, rng)
        kinds.append(kind)
    return twins, masks, kinds
