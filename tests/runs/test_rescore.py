"""`dhkd rescore`: a trained run scored under other score settings gives what training with
those settings gives, its own setting reproduces the logged metrics, and bad grids are
refused with the key named; a threshold rule decides as dhkd.threshold decides on the run's
scores; over three categories, the leave-one-category-out choice is what dhkd.report.loo gives
on the scan's test numbers."""

from __future__ import annotations

import json
import statistics

import pytest

from dhkd.cli import main
from dhkd.errors import ConfigError, DataError
from dhkd.report.loo import leave_one_out
from dhkd.runs.rescore import (
    AS_TRAINED,
    best_on_validation,
    grid_settings,
    parse_grid,
    scan_run,
    setting_label,
    summarise,
)
from dhkd.sections import ThresholdConfig
from dhkd.threshold import choose_threshold, measures

METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")


def _train(root, out, *extra, category="widget"):
    args = ["train", "--data", str(root), "--category", category, "--preset", "tiny"]
    args += ["--out", str(out), "--quiet", "--set", "score.pooling=topk", *extra]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def trained(synthetic_root, tmp_path_factory):
    return _train(synthetic_root, tmp_path_factory.mktemp("rescore") / "run")


def test_a_rescored_setting_equals_training_with_it(trained, synthetic_root, tmp_path):
    """Score settings act after the model: the run trained with sigma 4 and rescored at sigma 1
    and top 5% scores what a run trained with them logs."""
    other = _train(
        synthetic_root,
        tmp_path / "other",
        "--set",
        "score.smoothing_sigma=1",
        "--set",
        "score.topk_fraction=0.05",
    )
    over = {"smoothing_sigma": 1.0, "topk_fraction": 0.05}
    (scan,) = scan_run(trained, [over], progress=False)
    assert scan.logged_gap is not None and scan.logged_gap < 1e-6  # = its metrics.json
    logged = json.loads((other / "metrics.json").read_text())["units"][0]
    got = scan.results[setting_label(over)]
    for metric in ("image_auroc", "pixel_auroc", "pixel_aupro"):
        assert got[f"test/{metric}"] == pytest.approx(logged[metric], abs=1e-6)
        assert got[f"val/{metric}"] == pytest.approx(logged["val"][metric], abs=1e-6)
    assert got != scan.results[AS_TRAINED]


def test_pooling_moves_image_scores_only(trained):
    settings = grid_settings({"pooling": ["max", "mean"]})
    (scan,) = scan_run(trained, settings, progress=False)
    own = scan.results[AS_TRAINED]
    for over in settings:
        row = scan.results[setting_label(over)]
        for key in ("val/pixel_auroc", "val/pixel_aupro", "test/pixel_auroc"):
            assert row[key] == own[key]
    summary = summarise([scan])
    assert [s.label for s in summary] == [AS_TRAINED, "pooling=max", "pooling=mean"]
    best = best_on_validation(summary)
    top = max(s.means["val/image_auroc"] for s in summary)
    chosen = next(s for s in summary if s.label == best["image_auroc"])
    assert chosen.means["val/image_auroc"] == top
    assert best["pixel_aupro"] == AS_TRAINED  # ties go to the setting the run has


def test_grid_is_a_cross_product_without_duplicates():
    grid = parse_grid(
        ["score.pooling=max,topk", "smoothing_sigma=2, 4", "score.topk_fraction=0.01,0.1"]
    )
    assert grid == {
        "pooling": ["max", "topk"],
        "smoothing_sigma": [2, 4],
        "topk_fraction": [0.01, 0.1],
    }
    labels = [setting_label(s) for s in grid_settings(grid)]
    assert labels == [
        "pooling=max sigma=2",
        "pooling=max sigma=4",
        "pooling=topk sigma=2 top=0.01",
        "pooling=topk sigma=2 top=0.1",
        "pooling=topk sigma=4 top=0.01",
        "pooling=topk sigma=4 top=0.1",
    ]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("score.level_norm=none", r"cannot be scanned after training.*score\.smoothing_sigma"),
        ("optim.lr=0.1", r"grid key 'optim\.lr' cannot be scanned"),
        ("score.pooling=median", r"'score\.pooling'.*median"),
        ("score.topk_fraction=0,0.1", r"'score\.topk_fraction'"),
        ("score.pooling", r"must look like score\.KEY=V1,V2"),
        ("threshold.mode=f1_max,median", r"'threshold\.mode'.*median"),
        ("threshold.fraction=1.5", r"'threshold\.fraction'"),
        ("threshold.value=0.5", r"'threshold\.value' cannot be scanned.*threshold\.mode"),
    ],
)
def test_bad_grids_name_the_key(item, message):
    with pytest.raises(ConfigError, match=message):
        parse_grid([item])


def test_threshold_keys_drop_what_the_mode_does_not_read():
    grid = parse_grid(["threshold.mode=f1_max,between", "threshold.fraction=0.1,0.5"])
    assert grid == {"threshold.mode": ["f1_max", "between"], "threshold.fraction": [0.1, 0.5]}
    settings = grid_settings(grid)
    assert settings == [
        {"threshold.mode": "f1_max"},
        {"threshold.mode": "between", "threshold.fraction": 0.1},
        {"threshold.mode": "between", "threshold.fraction": 0.5},
    ]
    assert [setting_label(s) for s in settings] == [
        "threshold=f1_max",
        "threshold=between fraction=0.1",
        "threshold=between fraction=0.5",
    ]
    mixed = grid_settings(parse_grid(["score.pooling=max", "threshold.mode=fpr,between"]))
    assert mixed == [
        {"pooling": "max", "threshold.mode": "fpr"},
        {"pooling": "max", "threshold.mode": "between"},
    ]


def _unit_scores(run, root):
    """The run's one unit scored directly: (validation, test) as (image scores, labels)."""
    import torch

    from dhkd.config import build_config
    from dhkd.features import default_feature_cache
    from dhkd.inference import Predictor
    from dhkd.runs.layout import RunFolder
    from dhkd.training.data import CategoryData
    from dhkd.weights import load_weights

    weights = load_weights(RunFolder(run).checkpoint)
    (entry,) = weights["units"]
    category, seed = entry["category"], int(entry["seed"])
    unit = Predictor.from_weights(weights, category, seed, "cpu").unit
    cfg = build_config(weights["config"])
    data = CategoryData(
        cfg, root, category, default_feature_cache(), torch.device("cpu"), with_train=False
    )
    val, test = data.validation, data.test()
    return (unit.predict(val)[0], val.labels), (unit.predict(test)[0], test.labels)


def test_threshold_rules_decide_as_on_the_runs_own_scores(trained, synthetic_root, monkeypatch):
    """Each rule's threshold is chosen on the unit's validation scores and measured on its test
    scores; the rules share the run's score setting, so its maps are fused once per fold; the
    run's own rule (the default, between at 0.4) gives the numbers its metrics.json logged."""
    from dhkd.methods.base import MethodUnit

    fused, fuse_batches = [], MethodUnit.fuse_batches

    def spy(self, batches, score=None):
        fused.append(score)
        return fuse_batches(self, batches, score)

    monkeypatch.setattr(MethodUnit, "fuse_batches", spy)
    settings = grid_settings(
        parse_grid(["threshold.mode=f1_max,between", "threshold.fraction=0.1,0.4"])
    )
    (scan,) = scan_run(trained, settings, progress=False)
    assert len(fused) == 2  # validation and test, once each for the four settings
    assert list(scan.results) == [AS_TRAINED, *map(setting_label, settings)]
    (val_scores, val_labels), (test_scores, test_labels) = _unit_scores(trained, synthetic_root)
    for over in settings:
        rule = ThresholdConfig(
            mode=over["threshold.mode"],
            **({"fraction": over["threshold.fraction"]} if "threshold.fraction" in over else {}),
        )
        value = choose_threshold(val_scores, val_labels, rule, "validation").value
        on_val, on_test = (
            measures(val_scores, val_labels, value),
            measures(test_scores, test_labels, value),
        )
        row = scan.results[setting_label(over)]
        assert row["val/threshold_ba_ratio"] == pytest.approx(on_val["ba_ratio"], abs=1e-12)
        for name in ("ba_ratio", "recall", "fpr", "precision"):
            assert row[f"test/threshold_{name}"] == pytest.approx(on_test[name], abs=1e-12)
    between = [scan.results[setting_label(s)]["test/threshold_recall"] for s in settings[1:]]
    assert between[0] >= between[1]  # a lower threshold calls at least as many defective
    logged = json.loads((trained / "metrics.json").read_text())["units"][0]
    own = scan.results[AS_TRAINED]
    assert own == scan.results["threshold=between fraction=0.4"]
    assert own["test/threshold_ba_ratio"] == pytest.approx(logged["threshold_ba_ratio"], abs=1e-9)
    assert own["val/threshold_ba_ratio"] == pytest.approx(
        logged["val"]["threshold_ba_ratio"], abs=1e-9
    )
    assert scan.logged_gap is not None and scan.logged_gap < 1e-6


def test_a_moved_dataset_or_a_mistyped_run_is_named(trained, tmp_path):
    with pytest.raises(DataError, match=r"does not exist here; pass --data ROOT"):
        scan_run(trained, [], data_root=tmp_path / "gone", progress=False)
    with pytest.raises(DataError, match=r"neither a folder .* nor an MLflow run id"):
        scan_run(tmp_path / "no-such-run", [], progress=False)


def test_cli_prints_the_table_and_writes_json(trained, tmp_path, capsys):
    out = tmp_path / "scan.json"
    args = ["rescore", str(trained), "--grid", "score.smoothing_sigma=2,4", "--out", str(out)]
    assert main([*args, "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "choose on the val columns" in text and "best on validation" in text
    assert "sigma=2" in text and "warning" not in text
    assert "BA ratio" not in text  # no threshold columns: the grid keeps the run's rule
    data = json.loads(out.read_text())
    assert [s["setting"] for s in data["summary"]] == [AS_TRAINED, "sigma=2", "sigma=4"]
    assert data["units"][0]["logged_gap"] < 1e-6
    assert set(data["best_on_validation"]) == {"image_auroc", "pixel_auroc", "pixel_aupro"}


def test_under_selection_test_both_folds_are_the_test_images(synthetic_root, tmp_path):
    run = _train(synthetic_root, tmp_path / "run", "--selection", "test")
    (scan,) = scan_run(run, [{"smoothing_sigma": 2.0}], progress=False)
    assert scan.logged_gap is not None and scan.logged_gap < 1e-6
    assert scan.selection.endswith("(optimistic)")
    for row in scan.results.values():
        assert all(row[f"test/{m}"] == row[f"val/{m}"] for m in ("image_auroc", "pixel_aupro"))


def test_a_cold_cache_reads_no_train_images(trained, tmp_path, monkeypatch):
    """The model's level_norm divisors are in its weights: rescoring on an empty feature cache
    extracts the validation and test images only, and still reproduces the logged metrics."""
    from dhkd.features import FeatureCache

    monkeypatch.setenv("DHKD_FEATURE_CACHE", str(tmp_path / "cold"))
    splits, features = [], FeatureCache.features

    def spy(self, cfg, data, ident, device=None):
        splits.append(ident["split"])
        return features(self, cfg, data, ident, device)

    monkeypatch.setattr(FeatureCache, "features", spy)
    (scan,) = scan_run(trained, [], progress=False)
    assert sorted(splits) == ["test", "validation"]
    assert scan.logged_gap is not None and scan.logged_gap < 1e-6


@pytest.fixture(scope="module")
def three_categories(trained, synthetic_root, tmp_path_factory):
    """Runs of three categories: `trained` (widget), stripes, and gadget, a dataset of its own
    at the size of `synthetic_root`."""
    from dhkd.data.synth import make_synthetic_dataset

    tmp = tmp_path_factory.mktemp("rescore-loo")
    gadget = make_synthetic_dataset(
        tmp / "data", ["gadget"], image_size=64, n_train=12, n_test_good=4, n_test_defect=6
    )
    stripes = _train(synthetic_root, tmp / "stripes", category="stripes")
    return [trained, stripes, _train(gadget, tmp / "gadget", category="gadget")]


def test_leave_one_out_chooses_on_the_other_categories(three_categories, tmp_path, capsys):
    out = tmp_path / "scan.json"
    args = ["rescore", *map(str, three_categories), "--grid", "score.smoothing_sigma=0,8"]
    args += ["--leave-one-out", "pixel_aupro", "--out", str(out), "--quiet"]
    assert main(args) == 0
    text = capsys.readouterr().out
    data = json.loads(out.read_text())
    values = {}  # setting -> category -> metric: the mean over the category's units
    for label in data["units"][0]["results"]:
        for category in dict.fromkeys(u["category"] for u in data["units"]):
            units = [u["results"][label] for u in data["units"] if u["category"] == category]
            values.setdefault(label, {})[category] = {
                k.removeprefix("test/"): statistics.fmean(u[k] for u in units)
                for k in units[0]
                if k.startswith("test/")
            }
    expected = leave_one_out(values, "pixel_aupro")
    assert expected.categories == ["widget", "stripes", "gadget"]
    assert data["leave_one_out"] == json.loads(json.dumps(expected.to_json()))
    got = [h["chosen"] for h in data["leave_one_out"]["held_out"]]
    assert got == [h.chosen for h in expected.held_out]
    assert text.index("best on validation") < text.index("### Leave-one-category-out")
    assert "the held-out category's own test images never choose" in text
    assert f"In-sample choice (all 3 categories): {expected.in_sample}\n" in text
    for h in expected.held_out:
        assert f"| {h.category} | {h.chosen}" in text
        assert f"{100 * h.values['pixel_aupro']:.1f}" in text


def test_leave_one_out_over_two_categories_is_refused_before_scoring(three_categories, capsys):
    widget, stripes, _ = three_categories
    args = ["rescore", str(widget), str(stripes), "--leave-one-out", "image_auroc"]
    assert main([*args, "--grid", "score.smoothing_sigma=2"]) == 2
    captured = capsys.readouterr()
    assert "rescored" not in captured.out  # no unit was scored
    assert "needs runs over at least 3 categories" in captured.err
    assert "have 2: widget, stripes. Pass runs of more categories" in captured.err


def test_leave_one_out_on_the_threshold_ba_ratio(three_categories, tmp_path, capsys):
    out = tmp_path / "scan.json"
    args = ["rescore", *map(str, three_categories), "--grid", "threshold.mode=f1_max,between"]
    args += ["--grid", "threshold.fraction=0,1", "--leave-one-out", "threshold_ba_ratio"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    data = json.loads(out.read_text())
    labels = [
        AS_TRAINED,
        "threshold=f1_max",
        "threshold=between fraction=0",
        "threshold=between fraction=1",
    ]
    assert [s["setting"] for s in data["summary"]] == labels
    assert "val BA ratio" in text and "test FPR" in text and "test precision" in text
    assert set(data["best_on_validation"]) == {*METRICS, "threshold_ba_ratio"}
    values = {}  # setting -> category -> test threshold ba_ratio, the mean over the units
    for label in labels:
        for category in ("widget", "stripes", "gadget"):
            units = [u["results"][label] for u in data["units"] if u["category"] == category]
            values.setdefault(label, {})[category] = {
                "threshold_ba_ratio": statistics.fmean(u["test/threshold_ba_ratio"] for u in units)
            }
    expected = leave_one_out(values, "threshold_ba_ratio")
    loo = data["leave_one_out"]
    assert [h["chosen"] for h in loo["held_out"]] == [h.chosen for h in expected.held_out]
    assert loo["estimate"]["threshold_ba_ratio"] == pytest.approx(
        expected.estimate["threshold_ba_ratio"], abs=1e-12
    )
    assert set(loo["estimate"]) >= {"threshold_recall", "threshold_fpr", "threshold_precision"}
    assert "chosen on test BA ratio" in text
    head = "| Held-out category | Chosen on the other categories | Threshold BA ratio |"
    assert head + " Threshold recall | Threshold false-alarm rate | Threshold precision |" in text
    for h in expected.held_out:
        assert f"| {h.category} | {h.chosen}" in text
