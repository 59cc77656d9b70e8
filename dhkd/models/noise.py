"""Feature-level noise that simulates anomalies in training (DHKD's part 3, see
dhkd/methods/dhkd/README.md; shared by dhkd's student and bikd's reverse distiller,
`bikd.erase_prob`).

f_noisy = f + m * eps, eps ~ N(0, (sigma * rms(f))^2); m is all-ones ("full") or a set of random
square patches at the same relative location on every level ("patches"); each sample is noised
with probability `prob`. With mode "replace" the masked features are replaced rather than
perturbed, f_noisy = (1 - m) * f + m * eps, so that the student must infer the teacher's output
there from the context around the patch. The student must still predict the teacher's output for
the clean f.
"""

from __future__ import annotations

import torch


def patch_masks(
    batch: int,
    count: int,
    size: float,
    generator: torch.Generator,
    device: torch.device,
    placement: str = "inside",
) -> torch.Tensor:
    """Random patch boxes in relative coordinates, (B, count, 4) as (y0, x0, y1, x1).

    inside: every box lies in the map, [0, 1]; a cell at the map's edge is then covered less
    often than a central one (on a 16x16 map at size 1/4, a cell in the middle of an edge
    about 1/8 as often, a corner cell about 1/64).
    uniform: boxes may hang over the edge (the map clips them), so that every cell is covered
    equally often."""
    draw = torch.rand(batch, count, 2, generator=generator, device=device)
    corner = draw * (1 + size) - size if placement == "uniform" else draw * (1 - size)
    return torch.cat([corner, corner + size], dim=-1)


def _boxes_to_mask(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, K, 4) relative boxes -> (B, 1, H, W) float mask of their union."""
    ys = (torch.arange(height, device=boxes.device).float() + 0.5) / height
    xs = (torch.arange(width, device=boxes.device).float() + 0.5) / width
    y0, x0, y1, x1 = (boxes[..., i, None, None] for i in range(4))
    inside = (ys[:, None] >= y0) & (ys[:, None] < y1) & (xs[None, :] >= x0) & (xs[None, :] < x1)
    return inside.any(dim=1, keepdim=True).float()


def add_feature_noise(
    feats: list[torch.Tensor],
    *,
    sigma: float,
    mask: str,
    mode: str = "add",
    prob: float,
    patch_size: float,
    patch_count: int,
    generator: torch.Generator,
    placement: str = "inside",
) -> list[torch.Tensor]:
    """Noisy copies of per-level features [(B, C_l, H_l, W_l)]; the inputs are not modified."""
    if sigma <= 0 or prob <= 0:
        return feats
    batch, device = feats[0].shape[0], feats[0].device
    chosen = (torch.rand(batch, generator=generator, device=device) < prob).float()
    boxes = None
    if mask == "patches":
        boxes = patch_masks(batch, patch_count, patch_size, generator, device, placement)
    noisy = []
    for f in feats:
        rms = f.detach().pow(2).mean().sqrt()
        eps = torch.randn(f.shape, generator=generator, device=device, dtype=f.dtype)
        m = chosen.view(-1, 1, 1, 1)
        if boxes is not None:
            m = m * _boxes_to_mask(boxes, f.shape[-2], f.shape[-1])
        kept = f * (1 - m) if mode == "replace" else f
        noisy.append(kept + m * eps * (sigma * rms))
    return noisy
