"""`dhkd suite plan|run --calibrate`: one unit trained per (method, preset) the plan has no cost
for, on the cheapest category, stored in STORAGE/suites/SUITE-calibration.json and read back by
later plans; refused without a GPU when trials ask for one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from dhkd.cli import main
from dhkd.suite.calibrate import calibration_path
from dhkd.suite.plan import cost_book, plan_suite
from dhkd.suite.spec import expand, load_suite

STUDY = {
    "name": "sigma",
    "description": "a tiny study of the calibration tests",
    "method": "dhkd",
    "fixed": {"optim.epochs": 1, "optim.eval_every": 1},
    "scientific": {"noise.sigma": {"type": "categorical", "values": [0.0, 0.5]}},
    "sampler": {"type": "grid"},
    "scheduler": {"type": "none"},
}


@pytest.fixture
def data(synthetic_root: Path, tmp_path: Path) -> Path:
    """The session's synthetic data with 4 of widget's 12 training images removed: widget is
    the cheaper category (8 train images, stripes 12)."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    for image in sorted((root / "widget" / "train" / "good").iterdir())[:4]:
        image.unlink()
    return root


@pytest.fixture
def trained(monkeypatch) -> list[tuple[str, str, int]]:
    """(method, category, seed) of every fit_units call."""
    import dhkd.training.fit

    calls: list[tuple[str, str, int]] = []
    real_fit = dhkd.training.fit.fit_units

    def counting_fit(cfg, data_root, units, **kwargs):
        calls.extend((cfg.method, c, s) for c, s in units)
        return real_fit(cfg, data_root, units, **kwargs)

    monkeypatch.setattr(dhkd.training.fit, "fit_units", counting_fit)
    return calls


def _suite(tmp_path: Path, data: Path, **extra) -> Path:
    tree = {
        "name": "c", "description": "calibration", "preset": "tiny", "seeds": [3, 4],
        "data": {"root": str(data), "dataset": "custom", "categories": ["stripes", "widget"]},
        "reference": "knn", "resources": {"cpus_per_trial": 2},
        "budget": {"wall_hours": 100}, "studies": [STUDY], **extra,
    }  # fmt: skip
    path = tmp_path / "suites" / "c.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def test_calibration_measures_the_missing_pairs_once_and_later_plans_read_it(
    tmp_path: Path, data: Path, trained, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no runs/mlflow.db: no MLflow costs
    path, storage = _suite(tmp_path, data), tmp_path / "ray"
    plan = ["suite", "plan", str(path), "--storage-path", str(storage)]
    assert main(plan) == 1  # no cost known: the budget cannot be checked
    err = capsys.readouterr().err
    assert "no cost is known for dhkd, knn (tiny)" in err and "--calibrate" in err
    assert trained == []

    assert main([*plan, "--calibrate"]) == 0
    out = capsys.readouterr().out
    # one unit per (method, preset): the first seed, on widget, the smaller train set
    assert sorted(trained) == [("dhkd", "widget", 3), ("knn", "widget", 3)]
    assert "[dhkd] calibrating dhkd/tiny on widget (seed 3) ..." in out
    assert "[dhkd] calibrating knn/tiny (reference) on widget (seed 3) ..." in out
    file = storage / "suites" / "c-calibration.json"
    assert calibration_path(storage, "c") == file.resolve()
    records = json.loads(file.read_text())
    assert [(r["method"], r["preset"], r["category"], r["seed"]) for r in records] == [
        ("dhkd", "tiny", "widget", 3), ("knn", "tiny", "widget", 3)]  # fmt: skip
    for r in records:
        assert r["wall_s"] > 0 and r["cpu_s"] > 0 and r["device"].startswith("cpu")
        assert r["commit"] and r["measured_at"].startswith("20")
    assert "calibration: widget" in out and "calibration: mean of dhkd x train size" in out
    assert "no cost known" not in out

    suite = load_suite(path)
    specs = expand(suite)
    result = plan_suite(suite, specs, cost_book(suite, specs, None, file))
    assert result.missing == [] and result.problems() == []
    widget = result.unit_costs[("dhkd", "tiny", "widget")]
    stripes = result.unit_costs[("dhkd", "tiny", "stripes")]
    assert (widget.wall_s, widget.cpu_s) == (records[0]["wall_s"], records[0]["cpu_s"])
    assert stripes.wall_s == pytest.approx(records[0]["wall_s"] * 12 / 8)  # scaled by train size

    assert main(plan) == 0  # a later plan reads the file, trains nothing
    assert main([*plan, "--calibrate"]) == 0  # nothing missing: nothing calibrated
    out = capsys.readouterr().out
    assert len(trained) == 2 and "calibrating" not in out
    assert out.count("calibration: widget") == 4  # dhkd and knn rows, in both plans
    assert len(json.loads(file.read_text())) == 2


def test_costs_in_the_table_are_not_calibrated(
    tmp_path: Path, data: Path, trained, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    costs = [{"method": "dhkd", "preset": "tiny", "category": "stripes", "wall_s": 5.0}]
    path, storage = _suite(tmp_path, data, costs=costs), tmp_path / "ray"
    assert main(["suite", "plan", str(path), "--storage-path", str(storage), "--calibrate"]) == 0
    out = capsys.readouterr().out
    assert trained == [("knn", "widget", 3)]
    assert "costs table: stripes" in out and "calibration: widget" in out
    records = json.loads((storage / "suites" / "c-calibration.json").read_text())
    assert [r["method"] for r in records] == ["knn"]


def test_calibration_on_another_device_kind_does_not_count(tmp_path: Path, data: Path) -> None:
    path = _suite(tmp_path, data)
    file = tmp_path / "c-calibration.json"
    record = {"method": "dhkd", "preset": "tiny", "category": "widget", "seed": 3,
              "wall_s": 9.0, "cpu_s": 12.0, "device": "cuda: NVIDIA H100", "commit": "x",
              "measured_at": "t"}  # fmt: skip
    file.write_text(json.dumps([record]))
    suite = load_suite(path)
    specs = expand(suite)
    assert cost_book(suite, specs, None, file).unit_cost("dhkd", "tiny", "widget") is None
    gpu = suite.model_copy(update={"resources": suite.resources.model_copy(
        update={"gpus_per_trial": 1.0})})  # fmt: skip
    cost = cost_book(gpu, specs, None, file).unit_cost("dhkd", "tiny", "widget")
    assert cost is not None and (cost.wall_s, cost.source) == (9.0, "calibration: widget")


def test_a_gpu_suite_without_a_gpu_refuses_calibration(
    tmp_path: Path, data: Path, trained, capsys, monkeypatch
) -> None:
    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    resources = {"cpus_per_trial": 2, "gpus_per_trial": 0.5}
    path, storage = _suite(tmp_path, data, resources=resources), tmp_path / "ray"
    assert main(["suite", "plan", str(path), "--storage-path", str(storage), "--calibrate"]) == 1
    captured = capsys.readouterr()
    refusal = [line for line in captured.err.splitlines() if "cannot calibrate" in line]
    assert len(refusal) == 1
    assert "ask for a GPU (resources.gpus_per_trial 0.5) and this machine has none" in refusal[0]
    assert "must be measured on a GPU node" in refusal[0]
    assert f"dhkd suite plan {path} --calibrate` there" in refusal[0]
    assert "no cost known" in captured.out
    assert main(["suite", "run", str(path), "--storage-path", str(storage), "--calibrate"]) == 1
    err = capsys.readouterr().err
    assert "dhkd suite run: cannot calibrate" in err and "nothing was run" in err
    assert trained == [] and not (storage / "suites").exists()
