"""Bad datasets get one verdict from every command (docs/design.md, "Data layout").

Each case breaks a copy of the session's synthetic dataset in one way; `dhkd data check`,
`dhkd train`, `dhkd study check` and `dhkd study run` must all refuse it with exit code 2 and
the same one-line error naming the file and the fix, before any work (no run folder, no study
folder), and without a traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from dhkd.cli import main

CATEGORY = "widget"


def _half_size_mask(cat: Path) -> tuple[Path, list[str]]:
    mask = cat / "ground_truth" / "scratch" / "000_mask.png"
    cv2.imwrite(str(mask), np.full((32, 32), 255, np.uint8))
    return mask, ["mask is 32x32 but its image 000.png is 64x64", "save the mask at"]


def _all_zero_mask(cat: Path) -> tuple[Path, list[str]]:
    mask = cat / "ground_truth" / "stain" / "001_mask.png"
    cv2.imwrite(str(mask), np.zeros((64, 64), np.uint8))
    return mask, ["is all zero", "draw the defect in the mask or move the image to test/good"]


def _no_defective_test_image(cat: Path) -> tuple[Path, list[str]]:
    for defect in ("scratch", "stain", "missing"):
        shutil.rmtree(cat / "test" / defect)
    shutil.rmtree(cat / "ground_truth")
    return cat / "test", ["no defective test image", "add defective images to test/<defect>"]


def _gradient_mask(cat: Path) -> tuple[Path, list[str]]:
    mask = cat / "ground_truth" / "missing" / "000_mask.png"
    cv2.imwrite(str(mask), np.tile((np.arange(64) * 4).astype(np.uint8), (64, 1)))
    return mask, ["not binary: it holds 64 values from 0 to 252", "save a binary mask"]


def _dangling_link(cat: Path) -> tuple[Path, list[str]]:
    link = cat / "train" / "good" / "100.png"
    link.symlink_to(cat / "gone.png")
    return link, [f"broken link to {cat / 'gone.png'}", "point the link at an existing file"]


def _unreadable_train_image(cat: Path) -> tuple[Path, list[str]]:
    image = cat / "train" / "good" / "003.png"
    image.write_bytes(image.read_bytes()[:60])
    return image, ["unreadable image", "replace or remove the file"]


CASES: dict[str, tuple[str, Callable[[Path], tuple[Path, list[str]]]]] = {
    "half-size mask": ("mask-size", _half_size_mask),
    "all-zero mask": ("mask-empty", _all_zero_mask),
    "no defective test image": ("no-defect-test", _no_defective_test_image),
    "0..255 gradient mask": ("mask-values", _gradient_mask),
    "dangling link in train/good": ("broken-link", _dangling_link),
    "unreadable train image": ("unreadable-image", _unreadable_train_image),
}


def _spec(tmp_path: Path, root: Path) -> Path:
    spec = tmp_path / "studies" / "bad_data.yaml"
    spec.parent.mkdir()
    spec.write_text(
        "name: bad_data\ndescription: a study over a broken dataset\nmethod: knn\n"
        f"preset: tiny\ndata: {{root: {root}, dataset: custom, categories: [{CATEGORY}]}}\n"
        "scientific:\n  seed: {type: categorical, values: [0, 1]}\n"
        "sampler: {type: grid, seed: 0}\nscheduler: {type: none}\n"
    )
    return spec


@pytest.fixture
def broken(request, synthetic_root: Path, tmp_path: Path):
    """(code, root, bad path, message fragments, spec) of the case named by the parameter."""
    code, breaker = CASES[request.param]
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    path, fragments = breaker(root / CATEGORY)
    return code, root, path, fragments, _spec(tmp_path, root)


@pytest.mark.parametrize("broken", list(CASES), indirect=True)
def test_one_verdict_from_every_command(broken, tmp_path: Path, capsys, monkeypatch) -> None:
    code, root, path, fragments, spec = broken
    monkeypatch.chdir(tmp_path)
    out, storage = tmp_path / "run", tmp_path / "ray"
    train = ["train", "--data", str(root), "--category", CATEGORY, "--preset", "tiny"]
    study_run = ["study", "run", str(spec), "--storage-path", str(storage), "--quiet"]
    commands = {
        "data check": ["data", "check", str(root)],
        "train": [*train, "--out", str(out), "--quiet"],
        "study check": ["study", "check", str(spec)],
        "study run": [*study_run, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
    }
    for name, argv in commands.items():
        rc = main(argv)
        captured = capsys.readouterr()
        text = captured.out + captured.err
        assert rc == 2, f"{name}: rc {rc}\n{text}"
        assert "Traceback" not in text
        errors = [line for line in text.splitlines() if line.lstrip().startswith("error [")]
        assert len(errors) == 1, f"{name}:\n{text}"
        assert f"error [{code}]: {path}: " in errors[0], f"{name}: {errors[0]}"
        for fragment in fragments:
            assert fragment in errors[0], f"{name}: {errors[0]}"
    assert not out.exists() and not storage.exists()
    assert not (tmp_path / "mlflow.db").exists()


def test_warnings_are_the_same_everywhere(synthetic_root: Path, tmp_path: Path, capsys) -> None:
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    gt = root / CATEGORY / "ground_truth" / "stain"
    (gt / "001_mask.png").rename(gt / "001.png")
    line = f"warning [mask-name]: {gt / '001.png'}: mask named like its image; rename it to "
    assert main(["data", "check", str(root)]) == 0
    assert line in capsys.readouterr().out
    assert main(["study", "check", str(_spec(tmp_path, root))]) == 0
    out = capsys.readouterr().out
    assert line in out and ": ok - bad_data" in out


def test_synth_refuses_categories_that_cannot_be_evaluated(tmp_path: Path, capsys) -> None:
    for flag in ("--n-test-defect", "--n-test-good"):
        assert main(["synth", str(tmp_path / "d"), "--image-size", "16", flag, "0"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and f"give {flag} 1 or more" in err
    assert not (tmp_path / "d").exists()


def test_train_refuses_in_a_fresh_process(synthetic_root: Path, tmp_path: Path) -> None:
    """The same line from the installed command, as a user sees it."""
    root = Path(shutil.copytree(synthetic_root, tmp_path / "data"))
    mask, _ = _half_size_mask(root / CATEGORY)
    argv = [sys.executable, "-m", "dhkd", "train", "--data", str(root), "--category", CATEGORY,
            "--preset", "tiny", "--out", str(tmp_path / "run")]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=os.environ)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("dhkd train: error: 1 data error(s) in widget of ")
    assert lines[1:] == [
        f"  error [mask-size]: {mask}: mask is 32x32 but its image 000.png is 64x64; save the "
        "mask at its image's size"
    ]
    assert not (tmp_path / "run").exists()
