"""The suite document's qualitative figure (dhkd/suite/qualitative.py) on real runs: the tiny
preset trained on the session's synthetic data, logged to an MLflow store the way a study logs
its trials and its reference (the run folder's files as artifacts at the run's root)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from dhkd.suite.qualitative import CELL_IN, DPI, qualitative_figure

CATEGORIES = ["stripes", "widget"]


class Store(NamedTuple):
    uri: str
    runs: dict[str, str]  # label -> run id
    folders: dict[str, Path]  # method -> its run folder
    tmp: Path


def _log(client, experiment: str, folder: Path, files: list[str], tags: dict) -> str:
    run_id = client.create_run(experiment, tags=tags).info.run_id
    for name in files:
        client.log_artifact(run_id, str(folder / name))
    client.set_terminated(run_id)
    return run_id


@pytest.fixture(scope="module")
def store(synthetic_root: Path, mlflow_template: Path, tmp_path_factory) -> Store:
    """A DHKD trial (one epoch) and a kNN reference on both synthetic categories, seed 0, and a
    trial that kept no weights (its config and fingerprint only), in a fresh sqlite store."""
    from mlflow.tracking import MlflowClient

    from dhkd.config import load_config
    from dhkd.training.fit import fit_units

    tmp = tmp_path_factory.mktemp("qualitative")
    folders = {}
    for method, overrides in (("dhkd", {"optim.epochs": 1}), ("knn", {})):
        cfg = load_config("tiny", overrides={"method": method, **overrides})
        folders[method] = tmp / method
        units = [(c, 0) for c in CATEGORIES]
        fit_units(cfg, synthetic_root, units, out_dir=folders[method], progress=False)
    shutil.copy(mlflow_template, tmp / "mlflow.db")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("q", artifact_location=str(tmp / "artifacts"))
    kept = ["config.yaml", "fingerprint.json", "metrics.json", "checkpoint.pt"]
    runs = {
        "DHKD": _log(client, experiment, folders["dhkd"], kept, {"method": "dhkd"}),
        "kNN": _log(client, experiment, folders["knn"], kept, {"dhkd.role": "reference"}),
        "pruned": _log(client, experiment, folders["dhkd"], kept[:3], {"state": "PRUNED"}),
    }
    return Store(uri, runs, folders, tmp)


def test_one_row_per_category_the_same_image_across_methods(store: Store, tmp_path: Path):
    from PIL import Image

    png, rows, notes = qualitative_figure(
        store.uri, store.runs, CATEGORIES, 0, tmp_path / "out", tmp_path / "work"
    )
    assert png == tmp_path / "out" / "qualitative.png" and png.is_file()
    assert [p.name for p in png.parent.iterdir()] == ["qualitative.png"]  # nothing else
    assert png.stat().st_size < 1_000_000
    with Image.open(png) as image:
        width, height = image.size
    ncols = 2 + len(store.runs)  # image | ground truth | one map per run
    assert width == pytest.approx(DPI * (CELL_IN * ncols + 0.3), abs=2)
    assert height == pytest.approx(DPI * ((CELL_IN + 0.25) * len(CATEGORIES) + 0.9), abs=2)

    expected = [(c, label, run_id) for c in CATEGORIES for label, run_id in store.runs.items()]
    assert [(r["category"], r["column"], r["run_id"]) for r in rows] == expected
    assert {r["figure"] for r in rows} == {"qualitative"} and {r["seed"] for r in rows} == {0}
    for category in CATEGORIES:  # the first defective test image, in sorted path order
        images = {r["image"] for r in rows if r["category"] == category}
        assert images == {f"{category}/test/missing/000.png"}

    pruned = store.runs["pruned"]
    assert any(pruned in n and "kept no weights" in n for n in notes), notes
    assert not any(store.runs["DHKD"] in n or store.runs["kNN"] in n for n in notes), notes


def test_the_maps_are_those_of_dhkd_predict(store: Store, tmp_path: Path, monkeypatch):
    """The figure draws exactly the map `dhkd predict --run` writes for the row's image."""
    import dhkd.suite.qualitative as qualitative
    from dhkd.cli import main

    drawn = {}
    real_draw = qualitative._draw

    def keep(rows, columns, seed, path):
        drawn.update({(r.category, c.label): cell for r in rows
                      for c, cell in zip(columns, r.cells, strict=True)})  # fmt: skip
        return real_draw(rows, columns, seed, path)

    monkeypatch.setattr(qualitative, "_draw", keep)
    runs = {"kNN": store.runs["kNN"]}
    qualitative_figure(store.uri, runs, ["widget"], 0, tmp_path / "out", tmp_path / "work")
    fp = json.loads((store.folders["knn"] / "fingerprint.json").read_text())
    image = Path(fp["data"]["root"]) / "widget/test/missing/000.png"
    args = ["predict", "--run", runs["kNN"], "--tracking-uri", store.uri, "--category", "widget",
            "--seed", "0", str(image), "--out", str(tmp_path / "p"), "--quiet"]  # fmt: skip
    assert main(args) == 0
    amap = np.load(tmp_path / "p" / "maps" / "000.npy")
    cell = drawn[("widget", "kNN")]
    predicted = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert cell.score == pytest.approx(predicted["predictions"][0]["score"])
    assert cell.stored and cell.span == pytest.approx(tuple(predicted["map_range"]))
    assert cell.amap.max() == pytest.approx(float(amap.max()), rel=0.05)


def test_a_missing_unit_and_an_unreadable_image_are_notes(store: Store, tmp_path: Path):
    """A category the runs were not trained on, a seed a run does not hold and a test image
    that cannot be decoded: empty cells and notes, the figure is still drawn."""
    import torch
    from mlflow.tracking import MlflowClient

    from dhkd.weights import load_weights

    weights = load_weights(store.folders["knn"] / "checkpoint.pt")
    data = tmp_path / "data"  # a copy of its data whose first defective image is broken
    shutil.copytree(weights["fingerprint"]["data"]["root"], data)
    (data / "widget/test/missing/000.png").write_bytes(b"not a png")
    weights["fingerprint"]["data"]["root"] = str(data)
    broken = tmp_path / "broken"
    shutil.copytree(store.folders["knn"], broken)
    torch.save(weights, broken / "checkpoint.pt")
    client = MlflowClient(store.uri)
    experiment = client.get_experiment_by_name("q").experiment_id
    files = ["config.yaml", "fingerprint.json", "checkpoint.pt"]
    runs = {"kNN copy": _log(client, experiment, broken, files, {}), "DHKD": store.runs["DHKD"]}

    png, rows, notes = qualitative_figure(
        store.uri, runs, ["widget", "gears"], 0, tmp_path / "out", tmp_path / "work"
    )
    assert png is not None and png.is_file()
    assert [r["image"] for r in rows] == ["widget/test/missing/000.png"] * 2 + [None] * 2
    assert any("widget" in n and "cannot decode" in n for n in notes), notes
    assert any(n.startswith("gears: none of the runs") for n in notes), notes

    png, rows, notes = qualitative_figure(  # seed 3: no unit in either run
        store.uri, {"DHKD": store.runs["DHKD"]}, ["stripes"], 3, tmp_path / "o2", tmp_path / "w2"
    )
    assert png is not None and any("holds no unit stripes/seed 3" in n for n in notes), notes


def test_the_figure_falls_back_to_a_seed_every_run_holds() -> None:
    """A study extended by seeds keeps the weights of its last units: the figure takes the
    first seed every run's weights hold for every category, and says so."""
    from dhkd.suite.qualitative import _Column, _common_seed

    def column(units):
        col = _Column("m", "run")
        col.weights = {"units": [{"category": c, "seed": s} for c, s in units]}
        return col

    extended = column([("a", 1), ("b", 1)])
    reference = column([("a", 0), ("a", 1), ("b", 0), ("b", 1)])
    notes: list[str] = []
    assert _common_seed([extended, reference], ["a", "b"], [0, 0, 1], notes) == 1
    assert notes == ["qualitative figure on seed 1: the kept weights of some runs hold no "
                     "seed-0 units (an extended study keeps its last units' weights)"]  # fmt: skip
    notes.clear()
    assert _common_seed([reference, _Column("x", "none")], ["a", "b"], [0, 1], notes) == 0
    assert _common_seed([extended], ["a", "c"], [0, 1], notes) == 0 and notes == []
