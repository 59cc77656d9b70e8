"""The qualitative figure's title stays inside the figure, one category or several."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imsave

from dhkd.report.figures import qualitative_figure

TITLE = "noise-level: best trial #12 (run 1a2b3c4d), test images, ground truth, anomaly maps"


@pytest.mark.parametrize("n", [1, 2, 6])
def test_title_fits_the_figure_width(tmp_path, n):
    grid = np.random.default_rng(0).random((400, 300, 3))
    paths = []
    for i in range(n):
        paths.append(tmp_path / f"maps_cat{i}_s0.png")
        imsave(paths[-1], grid)
    fig = qualitative_figure(paths, TITLE)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    box = fig._suptitle.get_window_extent(renderer)
    assert box.x0 >= 0 and box.x1 <= fig.get_figwidth() * fig.dpi
    assert box.y1 <= fig.get_figheight() * fig.dpi
    assert fig._suptitle.get_text().replace("\n", " ") == TITLE  # wrapped, nothing dropped
    if n > 1:
        assert "\n" not in fig._suptitle.get_text()
