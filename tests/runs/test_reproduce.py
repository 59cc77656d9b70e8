"""Fingerprints and `dhkd reproduce`: a train folder reproduces exactly on the CPU, with the
feature threads of the logged run; an edited training image is named as changed data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from dhkd.cli import main
from dhkd.fingerprint import compare, run_fingerprint


@pytest.fixture
def data(synthetic_root, tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(synthetic_root / "widget", root / "widget")
    return root


def _train(data: Path, out: Path) -> None:
    args = ["train", "--data", str(data), "--category", "widget", "--preset", "tiny"]
    assert main([*args, "--set", "optim.epochs=2", "--out", str(out), "--quiet"]) == 0


@pytest.mark.slow
def test_a_train_folder_reproduces_exactly_until_a_training_image_changes(data, tmp_path, capsys):
    _train(data, tmp_path / "run")
    fp = json.loads((tmp_path / "run" / "fingerprint.json").read_text())
    assert fp["units"] == [["widget", 0]] and fp["data"]["root"] == str(data.resolve())
    assert set(fp["versions"]) == {"torch", "ray", "optuna", "mlflow", "FrEIA", "dhkd"}
    capsys.readouterr()
    assert main(["reproduce", str(tmp_path / "run"), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "reproduced: every metric within 1e-06" in text and "widget/pixel_aupro" in text
    assert "data changed" not in text

    image = data / "widget" / "train" / "good" / "003.png"
    pixels = cv2.imread(str(image))
    noise = np.random.default_rng(0).integers(0, 255, pixels.shape, dtype=np.uint8)
    cv2.imwrite(str(image), noise)
    main(["reproduce", str(tmp_path / "run"), "--quiet"])
    text = capsys.readouterr().out
    assert "data changed: category widget" in text


@pytest.mark.slow
def test_reproduce_computes_features_with_the_threads_of_the_logged_run(
    data, tmp_path, capsys, monkeypatch
):
    """A convolution's rounding can depend on the thread count, and a study's features are
    often computed by the driver (all cores) while its trials train on one thread each."""
    import torch

    import dhkd.features

    _train(data, tmp_path / "run")
    fp_path = tmp_path / "run" / "fingerprint.json"
    fp = json.loads(fp_path.read_text())
    assert set(fp["feature_threads"]) == {"widget/train", "widget/validation", "widget/test"}
    assert all(n == torch.get_num_threads() for n in fp["feature_threads"].values())
    fp["feature_threads"]["widget/train"] = 3  # as if another process had computed them
    fp_path.write_text(json.dumps(fp))

    seen = []
    extract = dhkd.features.extract_features

    def spy(cfg, images, device, batch_size=16):
        seen.append(torch.get_num_threads())
        return extract(cfg, images, device, batch_size)

    monkeypatch.setattr(dhkd.features, "extract_features", spy)
    before = torch.get_num_threads()
    capsys.readouterr()
    main(["reproduce", str(tmp_path / "run"), "--quiet"])
    assert sorted(seen) == sorted([3, before, before])  # train, validation, test
    assert torch.get_num_threads() == before
    assert "feature threads changed" not in capsys.readouterr().out  # recorded as logged


def test_compare_names_each_part_that_differs(data):
    fp = run_fingerprint(data, [("widget", 0)], "cpu")
    assert [line for line in compare(fp, fp) if not line.startswith("code changed")] == []
    other = json.loads(json.dumps(fp))
    other["code"] = {"commit": "0" * 40, "dirty": False}
    other["device"] = "cuda:NVIDIA H200"
    other["versions"]["torch"] = "9.9"
    fp["feature_threads"] = {"widget/train": 2}
    other["feature_threads"] = {"widget/train": 1}
    lines = compare(fp, other)
    assert "feature threads changed (None: not recorded): widget/train 2 -> 1" in lines
    assert any(line.startswith("code changed: commit") for line in lines)
    assert "device changed: cpu:" in "\n".join(lines)
    assert any("torch" in line and line.startswith("versions changed") for line in lines)
