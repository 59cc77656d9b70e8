"""Anomaly-simulating image augmentation for bidirectional KD (README.md in this folder).

The BiKD abstract names "a data augmentation that simulates anomalies while removing unneeded
noise". Our reading (every choice a `bikd.*` switch): paste a few rectangular patches into a normal
image, each filled with either

- "noise":   per-pixel uniform colour noise, or
- "texture": a patch cut from a random location of another training image (randomly flipped),

blended with the original at an opacity drawn from [min_opacity, 1]. The backward path of the model
sees the augmented image but must reconstruct the teacher's features of the clean image, i.e. it
learns to remove the simulated anomaly. Pure tensor code; randomness comes from the passed
torch.Generator only, so a generator state fixes the result.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch

AugmentKind = Literal["noise", "texture", "both"]
CHANGE_THRESHOLD = 0.5 / 255  # a pixel counts as changed from half a grey level on


class AugmentedBatch(NamedTuple):
    images: torch.Tensor  # (B, 3, H, W) float in [0, 1]
    masks: torch.Tensor  # (B, 1, H, W) float in {0, 1}: the pixels the patches changed
    chosen: torch.Tensor  # (B,) bool: the samples with at least one changed pixel


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """Uniform integer in [low, high] (inclusive), from the CPU generator."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _as_float(patch: torch.Tensor) -> torch.Tensor:
    return patch.float() / 255.0 if patch.dtype == torch.uint8 else patch.float()


def _patch_box(
    height: int, width: int, min_size: float, max_size: float, generator: torch.Generator
) -> tuple[int, int, int, int]:
    """A random box (y, x, h, w), sides drawn independently as fractions of the image side."""
    h = max(1, round(_uniform(min_size, max_size, generator) * height))
    w = max(1, round(_uniform(min_size, max_size, generator) * width))
    y = _randint(0, height - h, generator)
    x = _randint(0, width - w, generator)
    return y, x, h, w


def _texture_patch(
    sources: torch.Tensor, h: int, w: int, generator: torch.Generator
) -> torch.Tensor:
    """(3, h, w) float crop of a random source image (N, 3, H, W) at a random place, flipped."""
    src = sources[_randint(0, sources.shape[0] - 1, generator)]
    y = _randint(0, src.shape[-2] - h, generator)
    x = _randint(0, src.shape[-1] - w, generator)
    patch = _as_float(src[:, y : y + h, x : x + w])
    flips = torch.rand(2, generator=generator)
    if flips[0] < 0.5:
        patch = patch.flip(-1)
    if flips[1] < 0.5:
        patch = patch.flip(-2)
    return patch


def simulate_anomalies(
    images: torch.Tensor,
    *,
    kind: AugmentKind,
    prob: float,
    generator: torch.Generator,
    sources: torch.Tensor | None = None,
    max_patches: int = 2,
    min_size: float = 0.05,
    max_size: float = 0.25,
    min_opacity: float = 0.5,
) -> AugmentedBatch:
    """Paste simulated anomalies into a copy of `images`; the input is not modified.

    images: (B, 3, H, W) float in [0, 1]. sources: (N, 3, H, W) float in [0, 1] or uint8, the
    images texture patches are cut from (required for kind "texture" / "both"; defaults to
    `images`). Each sample is augmented with probability `prob` with 1..max_patches patches whose
    sides are min_size..max_size of the image side. `generator` is a CPU torch.Generator.
    Returns AugmentedBatch(images, masks, chosen): `masks` is 1 exactly where some channel changed
    by at least half a grey level; everywhere else the pixels equal the input.
    """
    if kind not in ("noise", "texture", "both"):
        raise ValueError(f"augment kind must be noise, texture or both, not {kind!r}")
    if not 0 < min_size <= max_size <= 1:
        raise ValueError(f"need 0 < min_size <= max_size <= 1, got {min_size}, {max_size}")
    batch, _, height, width = images.shape
    sources = images if sources is None else sources
    if sources.shape[-2] < round(max_size * height) or sources.shape[-1] < round(max_size * width):
        raise ValueError("texture sources are smaller than the largest patch; lower max_size")
    out = images.clone()
    chosen = torch.rand(batch, generator=generator) < prob
    for b in chosen.nonzero().flatten().tolist():
        for _ in range(_randint(1, max_patches, generator)):
            y, x, h, w = _patch_box(height, width, min_size, max_size, generator)
            use_noise = kind == "noise" or (
                kind == "both" and float(torch.rand((), generator=generator)) < 0.5
            )
            if use_noise:
                patch = torch.rand(3, h, w, generator=generator)
            else:
                patch = _texture_patch(sources, h, w, generator)
            alpha = _uniform(min_opacity, 1.0, generator)
            region = out[b, :, y : y + h, x : x + w]
            out[b, :, y : y + h, x : x + w] = (1 - alpha) * region + alpha * patch.to(region)
    # The mask marks what actually changed: a pasted patch that matches what it covers (black on
    # black) is no anomaly. Changes below half a grey level are reverted so that the images agree
    # exactly outside the mask.
    changed = (out - images).abs().amax(dim=1, keepdim=True) >= CHANGE_THRESHOLD
    out = torch.where(changed, out, images)
    masks = changed.to(images.dtype)
    return AugmentedBatch(out, masks, changed.flatten(1).any(dim=1))
