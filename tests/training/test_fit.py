"""fit_units / fit / `dhkd train` on the synthetic session dataset with the tiny preset."""

from __future__ import annotations

import csv
import itertools
import json
import math
import shutil

import numpy as np
import pytest
import torch

from dhkd.cli import main
from dhkd.config import load_config
from dhkd.errors import ConfigError, DataError, TrainingError
from dhkd.features import CachedSplit, FeatureCache
from dhkd.methods.base import batches, epoch_lr
from dhkd.methods.registry import make_unit
from dhkd.runs.layout import RunFolder
from dhkd.threshold import measures
from dhkd.training.evaluate import THRESHOLD_MEASURES
from dhkd.training.fit import fit, fit_units

METRIC_KEYS = ("image_auroc", "pixel_auroc", "pixel_aupro")


def _test_scores(path):
    """(scores, labels) of a scores_<category>_s<seed>.csv of a run folder."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return np.array([float(r["score"]) for r in rows]), np.array([int(r["label"]) for r in rows])


@pytest.fixture
def cache(tmp_path):
    return FeatureCache(tmp_path / "features")


def test_fit_units_reports_each_epoch_and_means(synthetic_root, cache, tmp_path):
    cfg = load_config("tiny", overrides={"optim.epochs": 3, "optim.eval_every": 2})
    reports = []
    result = fit_units(
        cfg,
        synthetic_root,
        [("stripes", 0), ("widget", 0), ("widget", 1)],
        callback=reports.append,
        feature_cache=cache,
        out_dir=tmp_path / "out",
        progress=False,
    )
    assert [r.epoch for r in reports] == [1, 2, 3]
    assert "val/image_auroc" not in reports[0].metrics
    assert "val/widget/image_auroc" in reports[1].metrics
    assert not any(k.startswith("test/") for r in reports for k in r.metrics)  # test: once, after
    assert result.monitor_seconds > 0  # the validation pass at epoch 2, before the last
    m = result.metrics
    for key in METRIC_KEYS:
        assert 0.0 <= m[f"test/{key}"] <= 1.0 and 0.0 <= m[f"val/{key}"] <= 1.0
        widget = [u[key] for u in result.units if u["category"] == "widget"]
        assert m[f"test/widget/{key}"] == pytest.approx(sum(widget) / 2)
        assert m[f"test/{key}"] == pytest.approx(sum(u[key] for u in result.units) / 3)
        val = [u["val"][key] for u in result.units]
        assert m[f"val/{key}"] == pytest.approx(sum(val) / 3)
        assert m[f"val/{key}"] == pytest.approx(reports[-1].metrics[f"val/{key}"])
    for name in ("image_f1", *(f"threshold_{t}" for t in THRESHOLD_MEASURES)):
        assert m[f"test/{name}"] == pytest.approx(sum(u[name] for u in result.units) / 3)
        assert m[f"val/{name}"] == pytest.approx(sum(u["val"][name] for u in result.units) / 3)
        widget = [u[name] for u in result.units if u["category"] == "widget"]
        assert m[f"test/widget/{name}"] == pytest.approx(sum(widget) / 2)
        assert f"val/stripes/{name}" in m and 0.0 <= m[f"test/{name}"] <= 1.0
    out = tmp_path / "out"
    for u in result.units:  # the stored threshold on the test images of its unit
        scores, labels = _test_scores(RunFolder(out).scores(u["category"], u["seed"]))
        on_test = measures(scores, labels, u["threshold"]["value"])
        assert {t: u[f"threshold_{t}"] for t in THRESHOLD_MEASURES} == pytest.approx(
            {t: on_test[t] for t in THRESHOLD_MEASURES}
        )
        chosen = u["threshold"]  # and on the validation images that chose it
        assert (u["val"]["threshold_recall"], u["val"]["threshold_fpr"]) == (
            chosen["recall"],
            chosen["fpr"],
        )
    written = json.loads((out / "metrics.json").read_text())
    assert written["test/pixel_aupro"] == m["test/pixel_aupro"]
    assert written["test/threshold_ba_ratio"] == m["test/threshold_ba_ratio"]
    assert written["val/widget/threshold_recall"] == m["val/widget/threshold_recall"]
    assert written["selection"]["protocol"] == "synthetic"
    assert (out / "maps_widget_s1.png").stat().st_size > 1000
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["config"]["optim"]["epochs"] == 3 and len(ckpt["units"]) == 3


def test_min_epoch_samples_passes_a_small_train_set_several_times():
    gen = torch.Generator().manual_seed(0)
    plain = torch.cat(batches(25, 16, gen))
    assert sorted(plain.tolist()) == list(range(25))
    epoch = batches(25, 16, gen, min_samples=160)
    order = torch.cat(epoch)
    assert len(order) == 175 and len(epoch) == 11  # ceil(160 / 25) = 7 passes, 16 per batch
    passes = order.view(7, 25)
    assert all(sorted(p.tolist()) == list(range(25)) for p in passes)
    assert not all(torch.equal(passes[0], p) for p in passes[1:])  # each pass shuffled anew
    assert len(torch.cat(batches(200, 16, gen, min_samples=160))) == 200  # one pass suffices


def test_max_epoch_samples_draws_a_fresh_subset_of_a_large_train_set_each_epoch():
    gen = torch.Generator().manual_seed(0)
    epochs = [torch.cat(batches(200, 16, gen, max_samples=64)) for _ in range(2)]
    for order in epochs:
        assert len(order) == 64 and len(set(order.tolist())) == 64
    assert set(epochs[0].tolist()) != set(epochs[1].tolist())
    both = [torch.cat(batches(n, 16, gen, 64, 64)) for n in (25, 300)]
    assert [len(order) for order in both] == [64, 64]  # same steps for 25 and 300 images
    assert sorted(both[0][:50].tolist()) == sorted(list(range(25)) * 2)  # whole passes first


def test_max_epoch_samples_below_min_is_an_error():
    with pytest.raises(ConfigError, match=r"max_epoch_samples \(32\) is below"):
        load_config(
            "quick", overrides={"optim.min_epoch_samples": 64, "optim.max_epoch_samples": 32}
        )


@pytest.mark.parametrize("method", ["dhkd", "bikd"])
def test_min_epoch_samples_lengthens_the_last_stage_only(method):
    n, size = 20, 64
    split = CachedSplit(
        features=[torch.randn(n, 8, 8, 8).half(), torch.randn(n, 16, 4, 4).half()],
        images=np.zeros((n, size, size, 3), dtype=np.uint8),
        labels=np.zeros(n, dtype=np.int64),
        masks=np.zeros((n, size, size), dtype=np.uint8),
        paths=tuple(f"{i}.png" for i in range(n)),
    )
    cfg = load_config(
        "tiny",
        overrides={"method": method, "optim.batch_size": 10, "optim.min_epoch_samples": 50},
    )
    unit = make_unit(cfg, "widget", 0, split, torch.device("cpu"))
    assert len(unit.epoch_batches()) == 6  # three passes of 20 images, 10 per batch
    assert len(unit.epoch_batches(last_stage=False)) == 2  # dhkd's teacher: one pass


def test_epoch_lr_is_constant_or_a_half_cosine_over_the_last_stage():
    assert [epoch_lr(0.01, "constant", e, 4) for e in (1, 4)] == [0.01, 0.01]
    rates = [epoch_lr(0.01, "cosine", e, 4) for e in range(1, 5)]
    assert rates[0] == 0.01 and rates[2] == pytest.approx(0.005)
    assert rates[3] == pytest.approx(0.01 * (1 + math.cos(0.75 * math.pi)) / 2) and rates[3] > 0
    assert all(a > b for a, b in itertools.pairwise(rates))


@pytest.mark.parametrize("method", ["dhkd", "bikd"])
def test_lr_schedule_sets_the_rate_of_every_last_stage_epoch(method, synthetic_root, cache):
    cfg = load_config(
        "tiny", overrides={"method": method, "optim.epochs": 3, "optim.lr_schedule": "cosine"}
    )
    seen = []

    def record(report):
        (unit_state,) = report.state()["units"]
        optimiser = unit_state["student_opt" if method == "dhkd" else "optimizer"]
        seen.append(optimiser["param_groups"][0]["lr"])

    units = [("widget", 0)]
    fit_units(cfg, synthetic_root, units, callback=record, feature_cache=cache, progress=False)
    assert seen == pytest.approx([epoch_lr(cfg.optim.lr, "cosine", e, 3) for e in (1, 2, 3)])
    assert seen[0] == cfg.optim.lr > seen[1] > seen[2] > 0


def test_quick_preset_dhkd_erases_patches_and_gives_every_category_similar_epochs():
    cfg = load_config("quick")
    assert (cfg.noise.mask, cfg.noise.mode, cfg.noise.sigma) == ("patches", "replace", 1.0)
    assert (cfg.optim.min_epoch_samples, cfg.optim.max_epoch_samples) == (64, 80)
    assert (cfg.teacher.epochs, cfg.optim.epochs) == (3, 30)
    assert load_config("quick", overrides={"method": "bikd"}).optim.epochs == 30
    paper = load_config("paper")  # the design's noise (DHKD README): added to the whole map
    assert (paper.noise.mask, paper.noise.mode, paper.optim.min_epoch_samples) == ("full", "add", 0)
    assert paper.optim.epochs == 100


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_from_state_continues_and_matches_uninterrupted_run(
    schedule, synthetic_root, cache, tmp_path
):
    cfg = load_config("tiny", overrides={"optim.epochs": 3, "optim.lr_schedule": schedule})
    units = [("stripes", 0)]
    full = fit_units(cfg, synthetic_root, units, feature_cache=cache, progress=False)

    states = {}

    def stop_after_two(report):
        states[report.epoch] = report.state()
        if report.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_units(
            cfg, synthetic_root, units, callback=stop_after_two, feature_cache=cache, progress=False
        )
    path = tmp_path / "state.pt"
    torch.save(states[2], path)
    resumed_epochs = []
    resumed = fit_units(
        cfg,
        synthetic_root,
        units,
        resume_state=torch.load(path, weights_only=True),
        callback=lambda r: resumed_epochs.append(r.epoch),
        feature_cache=cache,
        progress=False,
    )
    assert resumed_epochs == [3]
    for key in METRIC_KEYS:
        for split in ("val", "test"):
            name = f"{split}/{key}"
            assert resumed.metrics[name] == pytest.approx(full.metrics[name], abs=1e-6)


def test_feature_cache_is_reused_from_memory_and_disk(synthetic_root, tmp_path):
    cfg = load_config("tiny")
    first = FeatureCache(tmp_path / "f")
    a = first.get(cfg, synthetic_root, "stripes", "train")
    first.get(cfg, synthetic_root, "stripes", "train")
    assert first.stats["misses"] == 1 and first.stats["hits_memory"] == 1
    second = FeatureCache(tmp_path / "f")
    b = second.get(cfg, synthetic_root, "stripes", "train")
    assert second.stats["hits_disk"] == 1 and second.stats["misses"] == 0
    assert all(torch.equal(x, y) for x, y in zip(a.features, b.features, strict=True))
    other = load_config("tiny", overrides={"data.image_size": 96})
    second.get(other, synthetic_root, "stripes", "train")
    assert second.stats["misses"] == 1  # another image size is another key


def test_feature_cache_keeps_the_threads_that_computed_each_entry(synthetic_root, tmp_path):
    cfg, before = load_config("tiny"), torch.get_num_threads()
    fixed = FeatureCache(tmp_path / "f", threads={"stripes/train": 3})
    assert fixed.get(cfg, synthetic_root, "stripes", "train").threads == 3
    assert fixed.get(cfg, synthetic_root, "widget", "train").threads == before
    assert torch.get_num_threads() == before
    again = FeatureCache(tmp_path / "f")  # from disk: as computed, not as asked now
    assert again.get(cfg, synthetic_root, "stripes", "train").threads == 3
    assert again.stats["hits_disk"] == 1


def test_nan_loss_stops_with_a_clear_error(synthetic_root, cache):
    overrides = {"optim.lr": 1e30, "teacher.untrained": True, "optim.epochs": 3}
    cfg = load_config("tiny", overrides=overrides)
    with pytest.raises(TrainingError, match=r"non-finite loss.*stripes/seed0"):
        fit(cfg, synthetic_root, "stripes", None, feature_cache=cache, progress=False)


def test_category_without_defects_is_refused_before_training(synthetic_root, tmp_path, cache):
    root = tmp_path / "data"
    shutil.copytree(synthetic_root / "stripes", root / "stripes")
    for folder in (root / "stripes" / "test").iterdir():
        if folder.name != "good":
            shutil.rmtree(folder)
    shutil.rmtree(root / "stripes" / "ground_truth")
    with pytest.raises(DataError, match="defective"):
        fit(load_config("tiny"), root, "stripes", None, feature_cache=cache, progress=False)


def test_train_command_writes_outputs_and_rejects_bad_config(synthetic_root, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "train",
        "--data",
        str(synthetic_root),
        "--category",
        "widget",
        "--preset",
        "tiny",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    for name in ("metrics.json", "checkpoint.pt", "config.yaml", "maps_widget_s0.png"):
        assert (out / name).is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"test/image_auroc", "val/pixel_aupro", "train_seconds", "peak_rss_mb"} <= set(metrics)
    assert metrics["selection"]["label"].startswith("selected on held-out train/good images")
    assert main([*argv, "--set", "teacher.dpeth=3"]) == 2
    assert "unknown key 'teacher.dpeth'" in capsys.readouterr().err
    assert main([*argv, "--set", "teacher.depth=many"]) == 2
    assert (
        main(["train", "--data", str(tmp_path / "nope"), "--category", "x", "--out", str(out)]) == 2
    )


def test_progress_off_a_terminal_is_one_line_per_epoch(synthetic_root, cache, capsys):
    cfg = load_config("tiny", overrides={"optim.epochs": 3, "optim.eval_every": 2})
    fit_units(cfg, synthetic_root, [("widget", 0)], feature_cache=cache, progress=True)
    err = capsys.readouterr().err  # captured: not a terminal, like a log file
    assert "\r" not in err
    student = [line for line in err.splitlines() if line.startswith("[student] epoch ")]
    assert [line.split()[2] for line in student] == ["1/3", "2/3", "3/3"]
    assert "loss=" in student[0] and "pixel_aupro=" in student[1]


def test_teacher_nll_is_reported_each_teacher_epoch(synthetic_root, cache, capsys, tmp_path):
    cfg = load_config("tiny", overrides={"teacher.epochs": 3, "optim.epochs": 1})
    out = tmp_path / "out"
    result = fit_units(
        cfg, synthetic_root, [("widget", 0)], feature_cache=cache, out_dir=out, progress=True
    )
    nll = result.stage_losses["train/teacher_nll"]
    assert len(nll) == 3 and all(math.isfinite(v) for v in nll)
    assert nll[-1] < nll[0]  # the flow's NLL falls as the teacher trains
    assert result.monitor_seconds == 0.0  # one student epoch: its validation is the last
    lines = capsys.readouterr().err.splitlines()
    shown = [float(x.split("teacher_nll=")[1]) for x in lines if x.startswith("[teacher]")]
    assert shown == pytest.approx(nll, abs=1e-4)
    written = json.loads((out / "metrics.json").read_text())
    assert written["stage_losses"]["train/teacher_nll"] == nll
