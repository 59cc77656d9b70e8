"""`check_dataset` and `dhkd data check`: every problem is reported with its path and a fix."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from dhkd.cli import main
from dhkd.data.check import RULES, check_dataset, format_report
from dhkd.data.index import index_category
from dhkd.errors import DataError


@pytest.fixture
def copy_root(synthetic_root: Path, tmp_path: Path) -> Path:
    """A private, editable copy of the session's synthetic dataset."""
    return Path(shutil.copytree(synthetic_root, tmp_path / "data"))


def _only(report, severity: str):
    found = [p for p in report.problems if p.severity == severity]
    assert len(found) == 1, [str(p) for p in report.problems]
    return found[0]


def test_synthetic_dataset_is_clean(synthetic_root: Path) -> None:
    report = check_dataset(synthetic_root)
    assert report.ok and report.problems == []
    assert report.counts["stripes"] == {
        "train": {"good": 12},
        "test": {"good": 4, "missing": 2, "scratch": 2, "stain": 2},
    }
    assert report.masks["widget"] == {"missing": 2, "scratch": 2, "stain": 2}
    assert list(check_dataset(synthetic_root, "widget").counts) == ["widget"]


def test_missing_train_good(copy_root: Path) -> None:
    shutil.rmtree(copy_root / "stripes" / "train" / "good")
    err = _only(check_dataset(copy_root), "error")
    assert err.path == copy_root / "stripes" / "train" / "good"
    assert "missing train/good" in err.message and "create it" in err.message


def test_defective_image_without_mask(copy_root: Path) -> None:
    (copy_root / "widget" / "ground_truth" / "stain" / "001_mask.png").unlink()
    err = _only(check_dataset(copy_root), "error")
    assert err.path == copy_root / "widget" / "test" / "stain" / "001.png"
    assert "no mask" in err.message and "ground_truth/stain/001_mask.png" in err.message


def test_mask_of_another_size(copy_root: Path) -> None:
    mask = copy_root / "widget" / "ground_truth" / "scratch" / "000_mask.png"
    cv2.imwrite(str(mask), np.full((32, 48), 255, np.uint8))
    err = _only(check_dataset(copy_root), "error")
    assert err.path == mask
    assert "mask is 48x32 but its image 000.png is 64x64" in err.message


@pytest.mark.parametrize("content", [b"", b"garbage bytes", "truncated"])
def test_unreadable_file(copy_root: Path, content: bytes | str) -> None:
    image = copy_root / "stripes" / "train" / "good" / "003.png"
    image.write_bytes(image.read_bytes()[:60] if content == "truncated" else content)
    err = _only(check_dataset(copy_root), "error")
    assert err.path == image and "unreadable image" in err.message


def test_unreadable_mask(copy_root: Path) -> None:
    mask = copy_root / "widget" / "ground_truth" / "missing" / "001_mask.png"
    mask.write_bytes(b"\x89PNG broken")
    err = _only(check_dataset(copy_root), "error")
    assert err.path == mask and "unreadable mask" in err.message


def test_empty_category(copy_root: Path) -> None:
    (copy_root / "hollow" / "train" / "good").mkdir(parents=True)
    (copy_root / "hollow" / "test").mkdir()
    report = check_dataset(copy_root)
    err = _only(report, "error")
    assert err.category == "hollow" and "empty category" in err.message
    with pytest.raises(DataError):  # and the index refuses it too
        index_category(copy_root, "hollow")


def test_warnings_do_not_fail(copy_root: Path) -> None:
    gt = copy_root / "widget" / "ground_truth"
    shutil.copy(gt / "stain" / "000_mask.png", gt / "stain" / "099_mask.png")
    (gt / "missing" / "001_mask.png").rename(gt / "missing" / "001.png")
    (copy_root / "widget" / "train" / "good" / "notes.txt").write_text("x")
    report = check_dataset(copy_root)
    assert report.ok and not report.errors
    text = "\n".join(str(p) for p in report.warnings)
    assert len(report.warnings) == 3, text
    assert "099_mask.png: orphan mask" in text
    assert "001.png: mask named like its image; rename it to 001_mask.png" in text
    assert "notes.txt: ignored" in text


def test_every_rule_is_documented_with_its_verdict() -> None:
    """docs/design.md's table lists every rule of RULES with the same verdict."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "design.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z-]+)` \| (error|warning) \|", doc, re.MULTILINE))
    assert rows == {code: rule.severity for code, rule in RULES.items()}


def test_missing_root_or_category(tmp_path: Path, synthetic_root: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        check_dataset(tmp_path / "nope")
    report = check_dataset(tmp_path)
    assert not report.ok and "no category folder" in report.errors[0].message
    report = check_dataset(synthetic_root / "widget")
    assert "widget itself looks like a category: pass its parent" in report.errors[0].message
    report = check_dataset(synthetic_root, "bottle")
    assert "category not found (found: stripes, widget)" in report.errors[0].message


def test_format_report(synthetic_root: Path) -> None:
    text = format_report(check_dataset(synthetic_root))
    lines = text.splitlines()
    assert lines[0].split() == ["category", "split", "defect", "images", "masks"]
    assert lines[1].split() == ["stripes", "train", "good", "12", "-"]
    assert "0 error(s), 0 warning(s)" in text


def test_cli_good_and_broken(synthetic_root: Path, copy_root: Path, capsys) -> None:
    assert main(["data", "check", str(synthetic_root)]) == 0
    out = capsys.readouterr().out
    assert "widget    test   scratch       2      2" in out
    (copy_root / "stripes" / "ground_truth" / "scratch" / "001_mask.png").unlink()
    assert main(["data", "check", str(copy_root), "--category", "stripes"]) == 2
    captured = capsys.readouterr()
    assert "stripes/test/scratch/001.png: defective image has no mask" in captured.out
    assert "1 error(s)" in captured.err
    assert main(["data", "check", str(copy_root / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.real_data
def test_real_data_is_clean(shared_data: Path) -> None:
    root = shared_data / "mvtec_ad"
    if not (root / "bottle").is_dir():
        pytest.skip("mvtec_ad/bottle not in shared data")
    report = check_dataset(root, "bottle")
    assert report.problems == []
    counts = report.counts["bottle"]
    assert counts["train"] == {"good": 209} and counts["test"]["good"] == 20
    assert sum(n for d, n in counts["test"].items() if d != "good") == 63
    cookie = shared_data / "lookout_cookie"
    if (cookie / "cookie").is_dir():
        assert check_dataset(cookie).problems == []
