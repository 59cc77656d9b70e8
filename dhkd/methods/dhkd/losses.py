"""Student losses (part 5, README.md): L = L_kd + lambda * L_aff. Stateless functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation_loss(student: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-pixel MSE (mean over C, H, W, batch) or 1 - cosine over channels; (B, C, H, W) inputs."""
    if kind == "mse":
        return F.mse_loss(student, target)
    return (1 - F.cosine_similarity(student, target, dim=1)).mean()


def _positions(x: torch.Tensor, pool: int, form: str) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, P): the channel vectors of the positions whose pairwise products
    are the affinity matrix; maps larger than pool x pool are average-pooled first. "cosine":
    unit vectors; "dot": divided by sqrt(C), so that the products are dot products over C."""
    if max(x.shape[-2:]) > pool:
        x = F.adaptive_avg_pool2d(x, (min(pool, x.shape[-2]), min(pool, x.shape[-1])))
    flat = x.flatten(2)
    if form == "cosine":
        return F.normalize(flat, dim=1)
    return flat / flat.shape[1] ** 0.5


def affinity_matrix(x: torch.Tensor, pool: int, form: str) -> torch.Tensor:
    """(B, C, H, W) -> (B, P, P) pairwise similarity of spatial positions, P <= pool * pool.

    Maps larger than pool x pool are average-pooled first. "cosine": cosine similarity of the
    channel vectors; "dot": dot product divided by C.
    """
    flat = _positions(x, pool, form)
    return flat.transpose(1, 2) @ flat


def affinity_loss(
    student: torch.Tensor, target: torch.Tensor, pool: int, form: str
) -> torch.Tensor:
    """Mean squared difference of the student's and the teacher's affinity matrices.

    With X, Y the (C, P) position vectors of the two, the squared Frobenius distance of the
    (P, P) matrices X^T X and Y^T Y equals ||X X^T||^2 - 2 ||Y X^T||^2 + ||Y Y^T||^2 over (C, C)
    products: where C < P (a 32x32 level of 40 channels: 1600 entries instead of a million) it
    is computed that way, in float64 because the three terms nearly cancel as the student
    learns; otherwise from the matrices themselves.
    """
    x, y = _positions(student, pool, form), _positions(target, pool, form)
    channels, positions = x.shape[1], x.shape[2]
    if channels >= positions:
        return F.mse_loss(x.transpose(1, 2) @ x, y.transpose(1, 2) @ y)
    with torch.autocast(x.device.type, enabled=False):
        x, y = x.double(), y.double()
        squared = (
            (x @ x.transpose(1, 2)).pow(2).sum()
            - 2 * (y @ x.transpose(1, 2)).pow(2).sum()
            + (y @ y.transpose(1, 2)).pow(2).sum()
        )
    return (squared / (x.shape[0] * positions**2)).float()


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
