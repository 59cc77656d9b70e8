"""The qualitative figure of a suite document: anomaly maps across categories and methods.

One row per category, columns test image | ground truth | one anomaly map per method (a trial
run or a reference run of the suite's studies, by MLflow run id). Every method of a row sees
the same test image, fixed in advance without looking at any score: the first defective test
image of the category (dhkd.data.index order: defect folders by name, images in natural order,
good/ left out), with its mask from ground_truth/ as the index finds it.

Each map is computed by the run's kept weights exactly as `dhkd predict --run RUN_ID` computes
it (dhkd.runs.load.fetch_weights, dhkd.inference.Predictor, dhkd.runs.predict.predict_files),
and shown on its own colour scale: the unit's stored map range (the low / high of its maps on
the selection images, what `dhkd predict` overlays use) when the weights hold one, else the
map's own min / max; each cell says which, with the image score at its foot.

A column whose run kept no weights (spec keep_weights, or a trial stopped early), a category
missing from a run's units, an image that cannot be read: the cell says so, a note names the
run, and the rest of the figure is drawn. Only the PNG is written (no PDF: the photographs
would make it large).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dhkd.errors import DhkdError

FIGURE = "qualitative"
FILE = "qualitative.png"
DPI = 100
DISPLAY = 224  # pixels of every cell's picture (the model's square view of the image)
CELL_IN = 2.0  # inches per cell
MAX_BYTES = 300_000  # a larger PNG is re-encoded with a 256-colour palette (committed documents)
NO_WEIGHTS = "no weights kept"


@dataclass
class _Column:
    """One method column: its run and what was read from it."""

    label: str
    run_id: str
    weights: dict[str, Any] | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None  # the cell text when the run gives no maps


@dataclass
class _Cell:
    """What one map cell shows: a map, or a text saying why there is none."""

    text: str | None = None
    amap: np.ndarray | None = None  # DISPLAY x DISPLAY
    span: tuple[float, float] | None = None
    stored: bool = False  # span is the unit's stored map range
    score: float | None = None


@dataclass
class _Row:
    category: str
    image: str | None = None  # path relative to the data root
    picture: np.ndarray | None = None  # DISPLAY x DISPLAY x 3 uint8
    mask: np.ndarray | None = None  # DISPLAY x DISPLAY {0, 1}
    text: str = ""  # why there is no picture
    cells: list[_Cell] = field(default_factory=list)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _open(uri: str, label: str, run_id: str, workdir: Path, notes: list[str]) -> _Column:
    """The column of one run: its kept weights and its fingerprint (the data it was trained
    on), each downloaded into its own folder of workdir."""
    from dhkd.runs.load import fetch_weights, run_from_mlflow
    from dhkd.weights import load_weights

    col = _Column(label, run_id)
    folder = workdir / f"run-{run_id}"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        path = fetch_weights(run_id, uri, folder)
        col.weights = load_weights(path)
        path.unlink()  # held in memory from here; a kNN memory bank can be large on disk
        col.fingerprint = col.weights.get("fingerprint") or {}
    except DhkdError as exc:
        if "has no artifact" in str(exc):
            col.problem = NO_WEIGHTS
            notes.append(f"{label} (run {run_id}) kept no weights ({FILE} shows none for it)")
        else:
            col.problem = "weights not readable"
            notes.append(f"{label} (run {run_id}): {_first_line(exc)}")
    if not col.fingerprint.get("data"):  # no weights, or weights of a trial stopped early
        try:
            col.fingerprint = run_from_mlflow(run_id, uri, folder / "logged").fingerprint
        except DhkdError as exc:
            if col.problem is None:
                notes.append(f"{label} (run {run_id}) logged no fingerprint: {_first_line(exc)}")
    return col


def _trained_on(col: _Column, category: str) -> bool:
    return category in ((col.fingerprint.get("data") or {}).get("categories") or {})


def _data_root(columns: list[_Column], category: str) -> Path | None:
    """The data root of the first run (in column order) trained on the category whose root
    still holds it."""
    for col in columns:
        if _trained_on(col, category):
            root = Path(col.fingerprint["data"]["root"])
            if (root / category).is_dir():
                return root
    return None


def _digest(col: _Column, category: str) -> str | None:
    return col.fingerprint["data"]["categories"][category].get("digest")


def _test_image(root: Path, category: str):
    """The first defective test sample of the category in the index's order (a rule fixed
    before any score is seen); None when the category has none."""
    from dhkd.data.index import index_category

    return next((s for s in index_category(root, category).test if s.label == 1), None)


def _row(category: str, columns: list[_Column], notes: list[str]) -> tuple[_Row, Any]:
    """The row's test image and ground truth; (row, sample) with sample None when there is no
    image to show (the notes say why)."""
    from dhkd.data.images import load_image, load_mask

    row = _Row(category)
    root = _data_root(columns, category)
    if root is None:
        trained = [c for c in columns if _trained_on(c, category)]
        if trained:
            where = trained[0].fingerprint["data"]["root"]
            row.text = "data not found"
            notes.append(f"{category}: the data root {where} of its runs no longer holds it")
        else:
            row.text = "no run trained on it"
            notes.append(f"{category}: none of the runs was trained on it")
        return row, None
    try:
        sample = _test_image(root, category)
    except DhkdError as exc:
        row.text = "data not indexed"
        notes.append(f"{category}: {_first_line(exc)}")
        return row, None
    if sample is None:
        row.text = "no defective test image"
        notes.append(f"{category}: {root / category / 'test'} holds no defective image")
        return row, None
    row.image = sample.path.relative_to(root).as_posix()
    try:
        row.picture = load_image(sample.path, DISPLAY)
        row.mask = load_mask(sample.mask_path, DISPLAY)
    except DhkdError as exc:
        row.picture = row.mask = None
        row.text = "image not readable"
        notes.append(f"{category}: {_first_line(exc)}")
        return row, None
    return row, sample


def _cell(col: _Column, category: str, seed: int, sample, workdir: Path, notes: list[str]):
    """The map of one (run, category) on the row's image, by `dhkd predict`'s code."""
    from dhkd.inference import Predictor
    from dhkd.runs.predict import predict_files

    if col.weights is None:
        return _Cell(text=col.problem or NO_WEIGHTS)
    try:
        predictor = Predictor.from_weights(col.weights, category=category, seed=seed)
    except DhkdError:
        notes.append(f"{col.label} (run {col.run_id}) holds no unit {category}/seed {seed}")
        return _Cell(text=f"no unit {category}\nseed {seed}")
    out = workdir / f"predict-{col.run_id}-{category}"
    try:
        (result,) = predict_files(predictor, [sample.path], out, progress=False)
    except Exception as exc:  # one cell, never the whole document
        notes.append(f"{col.label} (run {col.run_id}), {category}: {_first_line(exc)}")
        return _Cell(text="map failed")
    if result.status != "ok":
        notes.append(f"{col.label} (run {col.run_id}), {category}: {result.error}")
        return _Cell(text="image not readable")
    amap = np.load(out / result.map).astype(np.float32)
    shown = cv2.resize(amap, (DISPLAY, DISPLAY), interpolation=cv2.INTER_LINEAR)
    stored = predictor.map_range is not None
    span = predictor.map_range or (float(amap.min()), float(amap.max()))
    return _Cell(amap=shown, span=span, stored=stored, score=result.score)


def _same_data(row: _Row, columns: list[_Column], notes: list[str]) -> None:
    """A note when the runs of a row were trained on different files of its category."""
    trained = [c for c in columns if _trained_on(c, row.category) and c.weights is not None]
    digests = {_digest(c, row.category) for c in trained}
    if len(digests) > 1:
        which = ", ".join(f"{c.label} {_digest(c, row.category)}" for c in trained)
        notes.append(f"{row.category}: the runs were trained on different data ({which})")


def _number(value: float) -> str:
    return f"{value:.3g}"


def _blank(ax, text: str) -> None:
    ax.set_facecolor("0.92")
    ax.text(0.5, 0.5, "\n".join(textwrap.wrap(text, 16)) if "\n" not in text else text,
            ha="center", va="center", fontsize=9, color="0.25", transform=ax.transAxes)  # fmt: skip


def _draw(rows: list[_Row], columns: list[_Column], seed: int, path: Path) -> Path:
    from dhkd.report.figures import fitted_suptitle, new_figure

    ncols = 2 + len(columns)
    fig = new_figure(CELL_IN * ncols + 0.3, (CELL_IN + 0.25) * len(rows) + 0.9)
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    headers = ["test image", "ground truth", *(c.label for c in columns)]
    for ax, header in zip(axes[0], headers, strict=True):
        ax.set_title("\n".join(textwrap.wrap(header, 20)), fontsize=11, fontweight="bold")
    for row, line in zip(rows, axes, strict=True):
        for ax in line:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_box_aspect(1)  # square cells, pictures or not
            ax.set_xlabel(" \n ", fontsize=8)  # every cell as tall as a map's, so rows align
        name = row.image.split("/", 2)[-1].removeprefix("test/") if row.image else ""
        line[0].set_ylabel(f"{row.category}\n{name}" if name else row.category, fontsize=10)
        if row.picture is None:
            for ax in line:
                _blank(ax, row.text)
            continue
        line[0].imshow(row.picture)
        line[1].imshow(row.picture)
        if row.mask is not None and row.mask.any():
            line[1].imshow(np.ma.masked_where(row.mask == 0, row.mask), cmap="autumn", alpha=0.45)
            line[1].contour(row.mask, levels=[0.5], colors="lime", linewidths=1.2)
        for ax, cell in zip(line[2:], row.cells, strict=True):
            if cell.amap is None:
                _blank(ax, cell.text or "")
                continue
            ax.imshow(row.picture)
            low, high = cell.span
            ax.imshow(cell.amap, cmap="jet", alpha=0.5, vmin=low, vmax=max(high, low + 1e-12))
            scale = "stored" if cell.stored else "own"
            ax.set_xlabel(f"score {_number(cell.score)}\n{scale} {_number(low)}..{_number(high)}",
                          fontsize=8)  # fmt: skip
    fitted_suptitle(
        fig,
        f"Anomaly maps, seed {seed}: the first defective test image of each category; each map "
        "on its own scale (stored: the unit's map range on its selection images; own: the "
        "map's min..max)",
        fontsize=11,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    if path.stat().st_size > MAX_BYTES:  # photographs compress badly: a palette keeps it small
        from PIL import Image

        with Image.open(path) as image:
            image.convert("RGB").quantize(256).save(path, optimize=True)
    return path


def _common_seed(
    columns: list[_Column], categories: list[str], seeds: list[int], notes: list[str]
) -> int:
    """The first of `seeds` whose units every run with weights holds for every category (a
    study extended by seeds keeps the weights of its last units only); seeds[0] if none."""
    held = [
        {(str(u["category"]), int(u["seed"])) for u in col.weights.get("units", [])}
        for col in columns
        if col.weights is not None
    ]
    for seed in dict.fromkeys(seeds):
        if all((c, seed) in units for units in held for c in categories):
            if seed != seeds[0]:
                notes.append(
                    f"qualitative figure on seed {seed}: the kept weights of some runs hold no "
                    f"seed-{seeds[0]} units (an extended study keeps its last units' weights)"
                )
            return seed
    return seeds[0]


def qualitative_figure(
    tracking_uri: str,
    runs: dict[str, str],
    categories: list[str],
    seed: int,
    out: Path,
    workdir: Path,
    fallback_seeds: Sequence[int] = (),
) -> tuple[Path | None, list[dict], list[str]]:
    """Write out/qualitative.png: one row per category (test image | ground truth | the map of
    each run of `runs`, label -> MLflow run id, in that order) on the category's first
    defective test image, by the unit of `seed` (or of the first of `fallback_seeds` every run
    holds, when some run's weights lack `seed`). Returns (the PNG, or None when there is
    nothing to draw or drawing failed; provenance rows {"figure", "category", "column",
    "run_id", "image" (relative to the data root; None without one), "seed"}, one per
    (category, column), in row then column order; notes on whatever a cell could not show)."""
    out, workdir = Path(out), Path(workdir)
    notes: list[str] = []
    provenance: list[dict] = []
    if not categories or not runs:
        notes.append("qualitative figure: no categories or no runs to show")
        return None, provenance, notes
    columns = [_open(tracking_uri, label, rid, workdir, notes) for label, rid in runs.items()]
    seed = _common_seed(columns, categories, [seed, *fallback_seeds], notes)
    rows: list[_Row] = []
    for category in categories:
        row, sample = _row(category, columns, notes)
        for col in columns:
            if sample is None:
                row.cells.append(_Cell(text=row.text))
            else:
                row.cells.append(_cell(col, category, seed, sample, workdir, notes))
            provenance.append({"figure": FIGURE, "category": category, "column": col.label,
                               "run_id": col.run_id, "image": row.image, "seed": seed})  # fmt: skip
        if sample is not None:
            _same_data(row, columns, notes)
        rows.append(row)
    if any(c.stored for r in rows for c in r.cells) and any(
        c.amap is not None and not c.stored for r in rows for c in r.cells
    ):
        notes.append(
            "qualitative figure: some maps are on their own min..max (weights without a stored "
            "map range: a trial stopped early), the others on their stored range"
        )
    try:
        return _draw(rows, columns, seed, out / FILE), provenance, notes
    except Exception as exc:  # the figure is one part of a document: say so, go on
        notes.append(f"qualitative figure not drawn: {_first_line(exc)}")
        return None, provenance, notes
