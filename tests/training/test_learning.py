"""The methods learn: on a generated category a trained DHKD and a trained BiKD reach image and
pixel AUROC >= 0.95 and beat the same model before training by a clear margin; a constant or a
random anomaly map cannot pass the same check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dhkd.config import load_config
from dhkd.data.synth import make_synthetic_dataset
from dhkd.features import FeatureCache
from dhkd.methods.registry import get_method, make_unit
from dhkd.metrics import evaluate_maps
from dhkd.training.data import CategoryData

CPU = torch.device("cpu")
FLOOR = 0.95  # image and pixel AUROC a trained model reaches
MARGIN = 0.1  # and by how much it beats itself untrained, on each of the two
SETTINGS = {
    # quick preset (pretrained offline backbone) at 96 px; selection "test": all train images
    "dhkd": {"teacher.epochs": 3, "optim.epochs": 6},
    "bikd": {"optim.epochs": 20},
}


@pytest.fixture(scope="module")
def category(tmp_path_factory):
    root = tmp_path_factory.mktemp("learning") / "data"
    make_synthetic_dataset(root, ["widget"], image_size=96, seed=0, n_train=20, n_test_good=6,
                           n_test_defect=9)  # fmt: skip
    return root


def _aurocs(scores: np.ndarray, maps: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    values = evaluate_maps(maps, masks, image_scores=scores)
    return float(values["image_auroc"]), float(values["pixel_auroc"])


def learned(after: tuple[float, float], before: tuple[float, float]) -> bool:
    """The check every trained method must pass."""
    return all(a >= FLOOR and a >= b + MARGIN for a, b in zip(after, before, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dhkd", "bikd"])
def test_a_trained_model_detects_what_the_untrained_one_does_not(category, method):
    overrides = {"method": method, "data.image_size": 96, "selection.protocol": "test"}
    cfg = load_config("quick", overrides={**overrides, **SETTINGS[method]})
    torch.set_num_threads(1)
    data = CategoryData(cfg, category, "widget", FeatureCache(directory=""), CPU)
    unit = make_unit(cfg, "widget", 0, data.train, CPU)
    test = data.test()
    before = _aurocs(*unit.predict(test), test.masks)
    for stage in get_method(method).stages(cfg):
        for epoch in range(1, stage.epochs + 1):
            unit.run_epoch(stage.name, epoch)
        unit.finish_stage(stage.name)
    after = _aurocs(*unit.predict(test), test.masks)
    assert learned(after, before), f"{method}: untrained {before}, trained {after}"


def test_a_constant_or_random_map_cannot_pass(category):
    cfg = load_config("tiny", overrides={"data.image_size": 96, "selection.protocol": "test"})
    test = CategoryData(cfg, category, "widget", FeatureCache(directory=""), CPU).test()
    n, size = len(test.labels), test.masks.shape[-1]
    constant = np.ones((n, size, size), np.float32)
    noise = np.random.default_rng(0).random((n, size, size)).astype(np.float32)
    for maps in (constant, noise):
        got = _aurocs(maps.max(axis=(1, 2)), maps, test.masks)
        assert not learned(got, (0.0, 0.0)), got
    perfect = test.masks.astype(np.float32)
    assert learned(_aurocs(perfect.max(axis=(1, 2)), perfect, test.masks), (0.5, 0.5))
