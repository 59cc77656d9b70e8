"""`dhkd rescore`: a trained run scored under other score settings gives what training with
those settings gives, its own setting reproduces the logged metrics, and bad grids are
refused with the key named."""

from __future__ import annotations

import json

import pytest

from dhkd.cli import main
from dhkd.errors import ConfigError, DataError
from dhkd.runs.rescore import (
    AS_TRAINED,
    best_on_validation,
    grid_settings,
    parse_grid,
    scan_run,
    setting_label,
    summarise,
)


def _train(root, out, *extra):
    args = ["train", "--data", str(root), "--category", "widget", "--preset", "tiny"]
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
    ],
)
def test_bad_grids_name_the_key(item, message):
    with pytest.raises(ConfigError, match=message):
        parse_grid([item])


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
