"""Student losses (METHOD.md part 5): L = L_kd + lambda * L_aff. Stateless functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation_loss(student: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-pixel MSE (mean over C, H, W, batch) or 1 - cosine over channels; (B, C, H, W) inputs."""
    if kind == "mse":
        return F.mse_loss(student, target)
    return (1 - F.cosine_similarity(student, target, dim=1)).mean()


def affinity_matrix(x: torch.Tensor, pool: int, form: str) -> torch.Tensor:
    """(B, C, H, W) -> (B, P, P) pairwise similarity of spatial positions, P <= pool * pool.

    Maps larger than pool x pool are average-pooled first. "cosine": cosine similarity of the
    channel vectors; "dot": dot product divided by C.
    """
    if max(x.shape[-2:]) > pool:
        x = F.adaptive_avg_pool2d(x, (min(pool, x.shape[-2]), min(pool, x.shape[-1])))
    flat = x.flatten(2)  # (B, C, P)
    if form == "cosine":
        flat = F.normalize(flat, dim=1)
        return flat.transpose(1, 2) @ flat
    return flat.transpose(1, 2) @ flat / flat.shape[1]


def affinity_loss(
    student: torch.Tensor, target: torch.Tensor, pool: int, form: str
) -> torch.Tensor:
    """Mean squared difference of the student's and the teacher's affinity matrices."""
    return F.mse_loss(affinity_matrix(student, pool, form), affinity_matrix(target, pool, form))


def student_loss(
    students: list[torch.Tensor],
    targets: list[torch.Tensor],
    *,
    kd: str,
    affinity_weight: float,
    affinity_pool: int,
    affinity_form: str,
) -> torch.Tensor:
    """Sum over levels of L_kd + lambda * L_aff."""
    total = students[0].new_zeros(())
    for s, t in zip(students, targets, strict=True):
        total = total + distillation_loss(s, t, kd)
        if affinity_weight > 0:
            total = total + affinity_weight * affinity_loss(s, t, affinity_pool, affinity_form)
    return total
