"""Check a dataset in MVTec layout: count images and report every problem at once.

Unlike `index_category`, which stops at the first problem, `check_dataset` opens every image and
mask and lists all problems, each naming the file or folder and the fix. Errors make a dataset
unusable; warnings (an empty mask, an orphan mask, a fallback mask name, an ignored file) do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from dhkd.data.images import read_raw
from dhkd.data.index import (
    GOOD,
    IMAGE_SUFFIXES,
    find_mask,
    image_files,
    is_image_file,
    list_categories,
    looks_like_category,
    mask_candidates,
    require_root,
    sub_folders,
)
from dhkd.errors import DataError

Severity = Literal["error", "warning"]
_SUFFIXES = "/".join(s.lstrip(".") for s in IMAGE_SUFFIXES)


@dataclass(frozen=True)
class Problem:
    """One finding: `path` is the file or folder concerned, `message` says what and how to fix."""

    severity: Severity
    category: str
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}"


@dataclass
class CheckReport:
    """Result of `check_dataset`.

    counts[category][split][defect] = number of images; masks[category][defect] = masks found.
    """

    root: Path
    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    masks: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def error(self, category: str, path: Path, message: str) -> None:
        self.problems.append(Problem("error", category, path, message))

    def warn(self, category: str, path: Path, message: str) -> None:
        self.problems.append(Problem("warning", category, path, message))


def _shape(path: Path, category: str, report: CheckReport) -> tuple[int, int] | None:
    """(height, width) of a decodable image, or None after recording an 'unreadable' error."""
    try:
        return tuple(read_raw(path).shape[:2])
    except DataError:
        report.error(
            category, path, "unreadable image (empty, truncated or not an image); replace it"
        )
        return None


def _images(folder: Path, category: str, report: CheckReport) -> list[Path]:
    """Image files of `folder`; other visible files get an 'ignored' warning."""
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.is_file() and not p.name.startswith(".") and not is_image_file(p):
                report.warn(category, p, f"ignored: not a {_SUFFIXES} file; convert or move it")
    return image_files(folder)


def _check_train(folder: Path, category: str, report: CheckReport) -> None:
    train_good = folder / "train" / GOOD
    images = _images(train_good, category, report)
    if not train_good.is_dir():
        report.error(
            category, train_good, "missing train/good; create it and put defect-free images there"
        )
    elif not images:
        report.error(category, train_good, f"no {_SUFFIXES} image; add defect-free images")
    for img in images:
        _shape(img, category, report)
    report.counts[category]["train"] = {GOOD: len(images)} if images else {}


def _check_mask(img: Path, mask: Path, fallback: bool, category: str, report: CheckReport) -> None:
    if fallback:
        report.warn(
            category, mask, f"mask named like its image; rename it to {img.stem}_mask.png (MVTec)"
        )
    img_shape = _shape(img, category, report)
    try:
        raw = read_raw(mask)
    except DataError:
        report.error(category, mask, "unreadable mask (empty, truncated or not an image)")
        return
    if img_shape is not None and tuple(raw.shape[:2]) != img_shape:
        report.error(
            category,
            mask,
            f"mask is {raw.shape[1]}x{raw.shape[0]} but its image {img.name} is "
            f"{img_shape[1]}x{img_shape[0]}; save the mask at the image's size",
        )
    elif not np.any(raw[..., :3] if raw.ndim == 3 else raw):
        report.warn(
            category,
            mask,
            "mask is all zero for a defective image; draw the defect or move the image to "
            "test/good",
        )


def _check_defect(folder: Path, defect: str, category: str, report: CheckReport) -> set[Path]:
    """Check the images and masks of test/<defect>; return the masks used."""
    used: set[Path] = set()
    masks = mask_candidates(folder / "ground_truth" / defect)
    for img in _images(folder / "test" / defect, category, report):
        mask, fallback = find_mask(img, masks)
        if mask is None:
            _shape(img, category, report)
            report.error(
                category,
                img,
                f"defective image has no mask; add ground_truth/{defect}/{img.stem}_mask.png "
                "or move the image to test/good",
            )
            continue
        used.add(mask)
        _check_mask(img, mask, fallback, category, report)
    report.masks[category][defect] = len(used)
    return used


def _check_test(folder: Path, category: str, report: CheckReport) -> None:
    test_dir = folder / "test"
    counts: dict[str, int] = {}
    used: set[Path] = set()
    for defect_dir in sub_folders(test_dir):
        counts[defect_dir.name] = len(image_files(defect_dir))
        if defect_dir.name == GOOD:
            for img in _images(defect_dir, category, report):
                _shape(img, category, report)
        else:
            used |= _check_defect(folder, defect_dir.name, category, report)
    report.counts[category]["test"] = dict(sorted(counts.items(), key=lambda kv: kv[0] != GOOD))
    if not any(counts.values()):
        report.error(category, test_dir, "no test image; add test/good and test/<defect> images")
    elif not counts.get(GOOD):
        report.warn(category, test_dir / GOOD, "no good test image; image AUROC needs both kinds")
    for gt_defect in sub_folders(folder / "ground_truth"):
        for mask in image_files(gt_defect):
            if mask not in used:
                report.warn(
                    category,
                    mask,
                    f"orphan mask: no image in test/{gt_defect.name}/ matches it; delete it or "
                    "add its image",
                )


def check_category(root: Path, category: str, report: CheckReport) -> None:
    """Add the counts and problems of one category to `report`."""
    folder = root / category
    report.counts[category] = {"train": {}, "test": {}}
    report.masks[category] = {}
    if not folder.is_dir():
        report.error(category, folder, "category folder not found; check the name and the root")
        return
    if not any(image_files(d) for sub in ("train", "test") for d in sub_folders(folder / sub)):
        report.error(
            category, folder, "empty category: no image in train/ or test/; add images or remove it"
        )
        return
    _check_train(folder, category, report)
    _check_test(folder, category, report)


def check_dataset(root: str | Path, category: str | None = None) -> CheckReport:
    """Check every category of `root` (or only `category`); see the module docstring.

    Raises DataError when `root` is not a folder; everything else is reported as a Problem.
    """
    path = require_root(root)
    report = CheckReport(root=path)
    categories = [category] if category is not None else list_categories(path)
    if not categories:
        hint = (
            f"{path.name} itself looks like a category: pass its parent {path.parent}"
            if looks_like_category(path)
            else "pass the folder that holds <category>/train/good"
        )
        report.error("", path, f"no category folder (one with train/ or test/) found; {hint}")
    elif category is not None and not (path / category).is_dir():
        found = ", ".join(list_categories(path)) or "none"
        report.error(category, path / category, f"category not found (found: {found})")
        return report
    for name in categories:
        check_category(path, name, report)
    return report


def format_report(report: CheckReport) -> str:
    """A plain-text table of counts per category, split and defect type, then the problems."""
    rows = [("category", "split", "defect", "images", "masks")]
    for cat, splits in report.counts.items():
        for split, per in splits.items():
            for defect, n in per.items():
                has_masks = split == "test" and defect != GOOD
                masks = str(report.masks[cat].get(defect, 0)) if has_masks else "-"
                rows.append((cat, split, defect, str(n), masks))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i < 3 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines = [*lines, ""] if len(rows) > 1 else []
    lines.append(f"{report.root}: {len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    lines.extend(f"  {p}" for p in report.problems)
    return "\n".join(lines)
