"""Acceptance on the real cookie category: `dhkd predict` with the checkpoint of `dhkd train`
(DHKD's defaults: the session's run that the accuracy test also checks) writes the test scores
behind metrics.json (scores_cookie_s0.csv), its decisions at the stored threshold give
metrics.json's test F1, and the ONNX export agrees with PyTorch on test images."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from dhkd.cli import main
from dhkd.metrics import image_auroc
from dhkd.threshold import rates

pytestmark = [pytest.mark.slow, pytest.mark.real_data]


@pytest.fixture(scope="module")
def cookie(cookie_root, cookie_dhkd_run):
    """(data root, run folder) of the session's DHKD run on cookie (tests/conftest.py)."""
    return cookie_root, cookie_dhkd_run


def test_predict_writes_the_scores_and_f1_of_metrics_json(cookie, tmp_path):
    root, run = cookie
    out = tmp_path / "pred"
    test = root / "cookie" / "test"
    assert main(["predict", "--checkpoint", str(run / "checkpoint.pt"), str(test),
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    with open(run / "scores_cookie_s0.csv") as f:
        trained = {r["path"]: (int(r["label"]), float(r["score"])) for r in csv.DictReader(f)}
    with open(out / "predictions.csv") as f:
        predicted = {r["path"]: r for r in csv.DictReader(f)}
    assert set(predicted) == set(trained)
    paths = sorted(trained)
    labels = np.array([trained[p][0] for p in paths])
    before = np.array([trained[p][1] for p in paths])
    after = np.array([float(predicted[p]["score"]) for p in paths])
    assert np.abs(after - before).max() <= 1e-5 * max(1.0, np.abs(before).max())
    metrics = json.loads((run / "metrics.json").read_text())
    assert image_auroc(after, labels) == pytest.approx(metrics["test/image_auroc"], abs=1e-9)
    threshold = metrics["units"][0]["threshold"]["value"]
    decided = np.array([predicted[p]["decision"] == "defective" for p in paths])
    assert (decided == (after >= threshold)).all()
    assert rates(after, labels, threshold)["f1"] == pytest.approx(
        metrics["test/image_f1"], abs=1e-12
    )


def test_onnx_export_maps_agree_with_pytorch_on_test_images(cookie, tmp_path):
    """onnxruntime vs the same float32 graph in PyTorch within 1e-4 on every test image; vs
    `dhkd predict` (float16 features, as the run's metrics) maps and scores stay within 1%."""
    ort = pytest.importorskip("onnxruntime", reason="the [export] extra is not installed")
    import torch

    from dhkd.data.images import load_image
    from dhkd.export import ImageToScore
    from dhkd.inference import Predictor

    root, run = cookie
    model = tmp_path / "cookie.onnx"
    test = root / "cookie" / "test"
    files = sorted(test.rglob("*.png"))
    assert main(["export", "--checkpoint", str(run / "checkpoint.pt"), "--out", str(model),
                 "--check-images", *map(str, files[::20])]) == 0  # fmt: skip
    predictor = Predictor.from_checkpoint(run / "checkpoint.pt")
    graph = ImageToScore(predictor).eval()
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for start in range(0, len(files), 8):
        images = np.stack([load_image(p, predictor.image_size) for p in files[start : start + 8]])
        x = images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        scores, maps = session.run(None, {"image": x})
        with torch.no_grad():
            ref_scores, ref_maps = (t.numpy() for t in graph(torch.from_numpy(x)))
        assert np.abs(maps - ref_maps).max() <= 1e-4
        assert np.abs(scores - ref_scores).max() <= 1e-4
        cache_scores, cache_maps = predictor.predict_images(images)
        assert np.abs(maps - cache_maps).max() <= 1e-2 * max(1.0, np.abs(cache_maps).max())
        assert np.abs(scores - cache_scores).max() <= 1e-2 * max(1.0, np.abs(cache_scores).max())
