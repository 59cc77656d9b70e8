"""Qualitative pictures: test images beside their ground truth and anomaly maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def pick_examples(labels: np.ndarray, n_defective: int = 6, n_good: int = 2) -> list[int]:
    """Indices spread evenly over the defective images, then over the good ones."""
    picks: list[int] = []
    for label, count in ((1, n_defective), (0, n_good)):
        idx = np.flatnonzero(labels == label)
        if len(idx):
            take = np.linspace(0, len(idx) - 1, min(count, len(idx))).round().astype(int)
            picks.extend(int(i) for i in idx[np.unique(take)])
    return picks


def save_map_grid(
    images: np.ndarray,
    masks: np.ndarray,
    maps: np.ndarray,
    labels: np.ndarray,
    path: str | Path,
    *,
    title: str = "",
    rows: list[int] | None = None,
) -> Path:
    """A grid: one row per test image; columns image | ground truth | anomaly map overlay.

    images: uint8 (N, S, S, 3); masks: (N, S, S) {0, 1}; maps: float (N, S, S); labels: (N,).
    The maps share one colour scale (the 1st..99.9th percentile of all maps), so rows compare.
    Writes PNG (and PDF if the suffix is .pdf) and returns the path.
    """
    rows = rows if rows is not None else pick_examples(labels)
    lo, hi = np.percentile(maps, [1, 99.9])
    fig = Figure(figsize=(7.5, 2.4 * len(rows) + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for row, i in enumerate(rows):
        ax_img, ax_gt, ax_map = axes[row]
        ax_img.imshow(images[i])
        ax_img.set_ylabel("defective" if labels[i] else "good", fontsize=9)
        ax_gt.imshow(images[i])
        if masks[i].any():
            ax_gt.contour(masks[i], levels=[0.5], colors="lime", linewidths=1.2)
        ax_map.imshow(images[i])
        im = ax_map.imshow(maps[i], cmap="jet", alpha=0.5, vmin=lo, vmax=hi)
        ax_map.set_title(f"max {maps[i].max():.3g}", fontsize=8)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, name in zip(axes[0], ("image", "ground truth", "anomaly map"), strict=True):
        ax.set_title(name if ax is not axes[0][2] else f"anomaly map\n{ax.get_title()}", fontsize=9)
    fig.colorbar(im, ax=axes[:, 2].tolist(), shrink=0.6, label="anomaly score")
    if title:
        fig.suptitle(title, fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
