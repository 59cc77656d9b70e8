"""Figure titles stay inside the figure: the qualitative grid with one category or several, and
the bars with a long legend beside them."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.image import imsave

from dhkd.report.figures import bars_figure, qualitative_figure

TITLE = "noise-level: best trial #12 (run 1a2b3c4d), test images, ground truth, anomaly maps"


def _inside(fig) -> bool:
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    box = fig._suptitle.get_window_extent(renderer)
    return box.x0 >= 0 and box.x1 <= fig.get_figwidth() * fig.dpi


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


def test_bars_title_fits_beside_a_long_legend():
    labels = [f"augment {a}, erase_prob {e}" for a in ("true", "false") for e in ("0.0", "1.0")]
    cols = [SimpleNamespace(kind="measured", label=label, key=label) for label in labels]
    rows = ["cookie", "Average", "Validation"]
    cells = {(r, c.key): SimpleNamespace(value=90.0, std=1.0) for r in rows for c in cols}
    table = SimpleNamespace(columns=cols, rows=rows, cells=cells, title="AU-PRO@0.3")
    fig = bars_figure(SimpleNamespace(name="real_erase_bikd_cookie"), table)
    assert _inside(fig)
    assert fig._suptitle.get_text().replace("\n", " ").startswith("real_erase_bikd_cookie: AU-PRO")
