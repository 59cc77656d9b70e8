"""`dhkd predict` with the weights `dhkd train` keeps: same scores as training, decisions at the
stored threshold, any image size and colour, a corrupt file reported while the rest goes on."""

from __future__ import annotations

import csv
import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from dhkd.cli import main
from dhkd.errors import DataError
from dhkd.metrics import image_auroc
from dhkd.threshold import measures, rates
from dhkd.weights import FORMAT, load_weights


@pytest.fixture(scope="module", params=["dhkd", "bikd", "knn"])
def trained(request, synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"train-{request.param}")
    args = ["train", "--data", str(synthetic_root), "--category", "widget", "--preset", "tiny"]
    args += ["--method", request.param, "--out", str(out), "--quiet"]
    if request.param == "knn":
        args += ["--set", "knn.coreset_min=64"]
    else:  # the per-level divisors travel with the weights into predict and the ONNX graph
        args += ["--set", "score.level_norm=train_mean"]
    assert main(args) == 0
    return out


def _rows(folder):
    with open(folder / "predictions.csv") as f:
        return list(csv.DictReader(f))


def test_checkpoint_format_loads_with_weights_only(trained):
    data = torch.load(trained / "checkpoint.pt", weights_only=True)
    assert data["format"] == FORMAT and data["version"] == 1
    unit = data["units"][0]
    assert unit["threshold"]["source"] == "validation" and unit["threshold"]["mode"] == "between"
    assert len(unit["shapes"]) == len(data["config"]["backbone"]["levels"])
    assert data["fingerprint"]["data"]["categories"]["widget"]["files"] > 0


def test_predict_on_the_test_folder_gives_the_numbers_of_metrics_json(
    trained, synthetic_root, tmp_path, capsys
):
    out = tmp_path / "pred"
    test = synthetic_root / "widget" / "test"
    assert main(["predict", "--checkpoint", str(trained / "checkpoint.pt"), str(test),
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    rows = _rows(out)
    metrics = json.loads((trained / "metrics.json").read_text())
    assert len(rows) == sum(1 for _ in test.rglob("*.png"))
    labels = np.array([0 if r["name"].startswith("good/") else 1 for r in rows])
    scores = np.array([float(r["score"]) for r in rows])
    assert image_auroc(scores, labels) == metrics["test/image_auroc"]
    threshold = metrics["units"][0]["threshold"]["value"]
    assert {float(r["threshold"]) for r in rows} == {threshold}
    decided = np.array([r["decision"] == "defective" for r in rows], dtype=int)
    assert decided.tolist() == (scores >= threshold).astype(int).tolist()
    f1 = rates(scores, labels, threshold)["f1"]
    assert f1 == pytest.approx(metrics["test/image_f1"], abs=1e-12)
    first = rows[0]
    amap = np.load(out / first["map"])
    assert amap.shape == (64, 64) and amap.dtype == np.float32
    assert float(amap.max()) == pytest.approx(float(first["score"]), rel=1e-6)  # max pooling
    assert cv2.imread(str(out / first["overlay"])).shape[:2] == (64, 64)
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["images"] == len(rows) and summary["errors"] == 0
    assert [int(r["label"]) for r in rows] == labels.tolist()  # good/ = 0, other folders = 1
    on_labels = summary["threshold_on_labels"]
    assert on_labels["labels"] == "known" and on_labels["n_good"] == int((labels == 0).sum())
    assert on_labels["n_defective"] == int(labels.sum())
    expected = measures(scores, labels, threshold)
    assert {k: on_labels[k] for k in expected} == pytest.approx(expected)
    for name in ("precision", "recall", "fpr", "ba", "ba_ratio"):  # one unit: its own numbers
        assert on_labels[name] == pytest.approx(metrics[f"test/threshold_{name}"], abs=1e-12)
    printed = capsys.readouterr().out
    assert f"{on_labels['n_good']} good, {on_labels['n_defective']} defective" in printed
    assert f"false-alarm rate {on_labels['fpr']:.3f}" in printed
    assert f"= {on_labels['ba_ratio']:.3f} of the best" in printed


def test_labels_only_from_mvtec_test_folders(trained, synthetic_root, tmp_path, capsys):
    checkpoint = str(trained / "checkpoint.pt")
    test = synthetic_root / "widget" / "test"
    flat = tmp_path / "flat"  # images straight in the folder: no labels
    shutil.copytree(test / "good", flat)
    only_good = tmp_path / "only_good" / "good"  # the layout, but nothing to measure recall on
    shutil.copytree(test / "good", only_good)
    cases = [([str(flat)], "unknown"), ([str(test), str(flat)], "unknown")]
    cases += [([str(only_good.parent)], "known")]
    for i, (inputs, labels) in enumerate(cases):
        out = tmp_path / f"pred{i}"
        assert main(["predict", "--checkpoint", checkpoint, *inputs, "--out", str(out),
                     "--quiet"]) == 0  # fmt: skip
        summary = json.loads((out / "predictions.json").read_text())["threshold_on_labels"]
        assert summary["labels"] == labels and "ba" not in summary
        printed = capsys.readouterr().out
        assert ("labels unknown" in printed) == (labels == "unknown")
    assert summary["n_good"] == len(list(only_good.iterdir())) and summary["n_defective"] == 0
    assert "needs good and defective images" in summary["note"] and summary["note"] in printed
    assert {r["label"] for r in _rows(out)} == {"0"}


def test_any_size_format_and_a_corrupt_file(trained, synthetic_root, tmp_path):
    folder = tmp_path / "line"
    shutil.copytree(synthetic_root / "widget" / "test" / "good", folder)
    image = cv2.imread(str(folder / "000.png"))
    gray = cv2.cvtColor(cv2.resize(image, (150, 90)), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(folder / "gray_wide.bmp"), gray)
    cv2.imwrite(str(folder / "big.jpg"), cv2.resize(image, (300, 300)))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    out = tmp_path / "pred"
    code = main(["predict", "--checkpoint", str(trained / "checkpoint.pt"), str(folder),
                 "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 1  # some file could not be read
    rows = {r["name"]: r for r in _rows(out)}
    assert rows["broken"]["status"] == "error" and "broken.png" in rows["broken"]["error"]
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert len(ok) == len(rows) - 1 and {"gray_wide", "big", "000"} <= {r["name"] for r in ok}
    assert cv2.imread(str(out / rows["gray_wide"]["overlay"])).shape[:2] == (90, 150)
    assert all(r["decision"] in ("good", "defective") for r in ok)
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["errors"] == 1


def test_clear_errors(trained, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_weights(tmp_path / "nope.pt")
    torch.save({"units": []}, tmp_path / "old.pt")
    with pytest.raises(DataError, match="not in the dhkd weights format"):
        load_weights(tmp_path / "old.pt")
    code = main(["predict", "--checkpoint", str(trained / "checkpoint.pt"),
                 str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--quiet"])  # fmt: skip
    assert code == 2
    code = main(["predict", "--checkpoint", str(trained / "checkpoint.pt"), "--category",
                 "stripes", str(tmp_path), "--out", str(tmp_path / "o"), "--quiet"])  # fmt: skip
    assert code == 2


@pytest.mark.slow
def test_export_onnx_agrees_with_pytorch_on_test_images(trained, synthetic_root, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="the [export] extra is not installed")

    from dhkd.data.images import load_split
    from dhkd.data.index import index_category
    from dhkd.export import ImageToScore
    from dhkd.inference import Predictor

    out = tmp_path / "model.onnx"
    test = synthetic_root / "widget" / "test"
    assert main(["export", "--checkpoint", str(trained / "checkpoint.pt"), "--format", "onnx",
                 "--out", str(out), "--check-images", str(test / "good")]) == 0  # fmt: skip
    predictor = Predictor.from_checkpoint(trained / "checkpoint.pt")
    images = load_split(index_category(synthetic_root, "widget"), "test", 64).images
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    got = [session.run(None, {"image": x[i : i + 1]}) for i in range(len(x))]
    scores = np.concatenate([g[0] for g in got])
    maps = np.concatenate([g[1] for g in got])
    with torch.no_grad():
        ref_scores, ref_maps = (t.numpy() for t in ImageToScore(predictor)(torch.from_numpy(x)))
    assert maps.shape == ref_maps.shape == (len(images), 64, 64)
    assert np.abs(maps - ref_maps).max() <= 1e-4
    assert np.abs(scores - ref_scores).max() <= 1e-4
    cache_scores, cache_maps = predictor.predict_images(images)  # float16 features
    assert np.abs(maps - cache_maps).max() <= 1e-2 * max(1.0, np.abs(cache_maps).max())
    assert np.abs(scores - cache_scores).max() <= 1e-2 * max(1.0, np.abs(cache_scores).max())


def test_a_model_that_cannot_be_traced_is_a_clear_error(trained, tmp_path, monkeypatch):
    pytest.importorskip("onnxscript", reason="the [export] extra is not installed")
    from dhkd.errors import DhkdError
    from dhkd.export import export_onnx
    from dhkd.inference import Predictor

    predictor = Predictor.from_checkpoint(trained / "checkpoint.pt")
    monkeypatch.setattr(
        predictor.unit, "maps_from", lambda images, feats: [torch.from_numpy(feats[0].numpy())]
    )
    images = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    with pytest.raises(DhkdError, match="cannot be exported to ONNX"):
        export_onnx(predictor, tmp_path / "m.onnx", images)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
def test_a_graph_that_is_not_the_trained_pipeline_is_removed(trained, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime", reason="the [export] extra is not installed")
    from dhkd.errors import DhkdError
    from dhkd.export import export_onnx
    from dhkd.inference import Predictor

    predictor = Predictor.from_checkpoint(trained / "checkpoint.pt")
    cached = predictor.predict_images
    monkeypatch.setattr(
        predictor, "predict_images", lambda images: tuple(a * 1.5 + 1 for a in cached(images))
    )
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    with pytest.raises(DhkdError, match="not the trained pipeline; the file was removed"):
        export_onnx(predictor, tmp_path / "m.onnx", images)
    assert not (tmp_path / "m.onnx").exists()
