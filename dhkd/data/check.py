"""Check a dataset in MVTec layout: count images and report every problem at once.

Unlike `index_category`, which lists folders and stops at the first problem, `check_dataset`
opens every image and mask and lists all problems. RULES below is the one list of problems and
their verdicts: `dhkd data check`, `dhkd train`, `dhkd study check` and `dhkd study run` all
read it (the last three through `require_usable`), so a problem is an error everywhere or a
warning everywhere. An error makes a category unusable (train and studies refuse it); a warning
does not. Each message names the file or folder, says what is wrong and ends with the fix.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
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
class Rule:
    """One kind of problem: its code, its verdict and the fix its messages end with (`fix` may
    name fields that the finding fills in, e.g. {stem})."""

    code: str
    severity: Severity
    fix: str


RULES: dict[str, Rule] = {
    rule.code: rule
    for rule in (
        Rule("no-category", "error", "{hint}"),
        Rule("category-missing", "error", "check the name and the dataset root"),
        Rule("empty-category", "error", "add images or remove the folder"),
        Rule("no-train-folder", "error", "create it and put defect-free images there"),
        Rule("no-train-image", "error", "add defect-free images"),
        Rule("no-test-image", "error", "add test/good and test/<defect> images"),
        Rule("no-good-test", "error", "add defect-free test images to test/good"),
        Rule(
            "no-defect-test",
            "error",
            "add defective images to test/<defect> with masks in "
            "ground_truth/<defect>/<name>_mask.png",
        ),
        Rule("broken-link", "error", "point the link at an existing file or remove it"),
        Rule("unreadable-image", "error", "replace or remove the file"),
        Rule(
            "no-mask",
            "error",
            "add ground_truth/{defect}/{stem}_mask.png or move the image to test/good",
        ),
        Rule("unreadable-mask", "error", "replace the mask"),
        Rule("mask-size", "error", "save the mask at its image's size"),
        Rule(
            "mask-values",
            "error",
            "save a binary mask: 0 for defect-free pixels and one value (255) for the defect",
        ),
        Rule("mask-empty", "error", "draw the defect in the mask or move the image to test/good"),
        Rule("mask-name", "warning", "rename it to {stem}_mask.png (the MVTec name)"),
        Rule("orphan-mask", "warning", "delete it or add its image"),
        Rule("ignored-file", "warning", f"convert it to {_SUFFIXES} or move it"),
    )
}


@dataclass(frozen=True)
class Problem:
    """One finding: `path` is the file or folder concerned, `message` says what and how to fix."""

    code: str
    category: str
    path: Path
    message: str

    @property
    def severity(self) -> Severity:
        return RULES[self.code].severity

    def __str__(self) -> str:
        return f"{self.severity} [{self.code}]: {self.path}: {self.message}"


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

    def add(self, code: str, category: str, path: Path, what: str, **fix_fields: str) -> None:
        """Record a finding of rule `code`: `what` is wrong, then the rule's fix."""
        fix = RULES[code].fix.format(**fix_fields)
        self.problems.append(Problem(code, category, path, f"{what}; {fix}"))


def _shape(path: Path, category: str, report: CheckReport) -> tuple[int, int] | None:
    """(height, width) of a decodable image, or None after recording an 'unreadable' error."""
    try:
        return tuple(read_raw(path).shape[:2])
    except DataError:
        report.add(
            "unreadable-image",
            category,
            path,
            "unreadable image (empty, truncated, not an image or not readable)",
        )
        return None


def _images(folder: Path, category: str, report: CheckReport) -> list[Path]:
    """Image files of `folder`; broken links are errors, other visible files warnings."""
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.name.startswith("."):
                continue
            if p.is_symlink() and not p.exists():
                report.add(
                    "broken-link", category, p, f"broken link to {os.readlink(p)} (no such file)"
                )
            elif p.is_file() and not is_image_file(p):
                report.add("ignored-file", category, p, f"ignored: not a {_SUFFIXES} file")
    return image_files(folder)


def _check_train(folder: Path, category: str, report: CheckReport) -> None:
    train_good = folder / "train" / GOOD
    images = _images(train_good, category, report)
    if not train_good.is_dir():
        report.add("no-train-folder", category, train_good, "missing train/good")
    elif not images:
        report.add("no-train-image", category, train_good, f"no {_SUFFIXES} image")
    for img in images:
        _shape(img, category, report)
    report.counts[category]["train"] = {GOOD: len(images)} if images else {}


def _mask_values(mask: np.ndarray) -> np.ndarray:
    """The values of a mask as `load_mask` reads it: the largest colour channel, alpha ignored."""
    if mask.ndim == 3:
        mask = mask[..., :3].max(axis=2) if mask.shape[2] >= 3 else mask[..., 0]
    return np.unique(mask)


def _check_mask(img: Path, mask: Path, fallback: bool, category: str, report: CheckReport) -> None:
    if fallback:
        report.add("mask-name", category, mask, "mask named like its image", stem=img.stem)
    img_shape = _shape(img, category, report)
    try:
        raw = read_raw(mask)
    except DataError:
        report.add(
            "unreadable-mask", category, mask, "unreadable mask (empty, truncated or not an image)"
        )
        return
    if img_shape is not None and tuple(raw.shape[:2]) != img_shape:
        report.add(
            "mask-size",
            category,
            mask,
            f"mask is {raw.shape[1]}x{raw.shape[0]} but its image {img.name} is "
            f"{img_shape[1]}x{img_shape[0]}",
        )
        return
    values = _mask_values(raw)
    if len(values) > 2 or (len(values) == 2 and values[0] != 0):
        shown = ", ".join(str(v) for v in values[:4]) + (", ..." if len(values) > 4 else "")
        report.add(
            "mask-values",
            category,
            mask,
            f"mask is not binary: it holds {len(values)} values from {values[0]} to "
            f"{values[-1]} ({shown}), and every non-zero pixel would count as defect",
        )
    elif len(values) == 1 and values[0] == 0:
        report.add("mask-empty", category, mask, f"mask of defective image {img.name} is all zero")


def _check_defect(folder: Path, defect: str, category: str, report: CheckReport) -> set[Path]:
    """Check the images and masks of test/<defect>; return the masks used."""
    used: set[Path] = set()
    masks = mask_candidates(folder / "ground_truth" / defect)
    _images(folder / "ground_truth" / defect, category, report)
    for img in _images(folder / "test" / defect, category, report):
        mask, fallback = find_mask(img, masks)
        if mask is None:
            _shape(img, category, report)
            report.add(
                "no-mask",
                category,
                img,
                "defective image has no mask",
                defect=defect,
                stem=img.stem,
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
    n_defective = sum(n for defect, n in counts.items() if defect != GOOD)
    if not any(counts.values()):
        report.add("no-test-image", category, test_dir, "no test image")
    elif not counts.get(GOOD):
        report.add(
            "no-good-test",
            category,
            test_dir / GOOD,
            "no defect-free test image: the category cannot be evaluated (AUROC needs both kinds)",
        )
    elif not n_defective:
        report.add(
            "no-defect-test",
            category,
            test_dir,
            "no defective test image: the category cannot be evaluated (AUROC needs both kinds)",
        )
    for gt_defect in sub_folders(folder / "ground_truth"):
        for mask in image_files(gt_defect):
            if mask not in used:
                report.add(
                    "orphan-mask",
                    category,
                    mask,
                    f"orphan mask: no image in test/{gt_defect.name}/ matches it",
                )


def check_category(root: Path, category: str, report: CheckReport) -> None:
    """Add the counts and problems of one category to `report`."""
    folder = root / category
    report.counts[category] = {"train": {}, "test": {}}
    report.masks[category] = {}
    if not folder.is_dir():
        found = ", ".join(list_categories(root)) or "none"
        report.add("category-missing", category, folder, f"category not found (found: {found})")
        return
    if not any(image_files(d) for sub in ("train", "test") for d in sub_folders(folder / sub)):
        report.add(
            "empty-category", category, folder, "empty category: no image in train/ or test/"
        )
        return
    _check_train(folder, category, report)
    _check_test(folder, category, report)


def check_dataset(root: str | Path, category: str | Sequence[str] | None = None) -> CheckReport:
    """Check every category of `root`, or only `category` (a name or a list of names).

    Raises DataError when `root` is not a folder; everything else is reported as a Problem.
    """
    path = require_root(root)
    report = CheckReport(root=path)
    if category is None:
        categories = list_categories(path)
    else:
        categories = [category] if isinstance(category, str) else list(category)
    if not categories:
        hint = (
            f"{path.name} itself looks like a category: pass its parent {path.parent}"
            if looks_like_category(path)
            else "pass the folder that holds <category>/train/good"
        )
        report.add(
            "no-category", "", path, "no category folder (one with train/ or test/)", hint=hint
        )
    for name in categories:
        check_category(path, name, report)
    return report


MAX_LISTED = 20  # errors listed by `require_usable`; `dhkd data check` lists all


def require_usable(roots: Path | Sequence[Path], categories: Sequence[str]) -> list[Problem]:
    """Check `categories` of a dataset root (or of several roots, each category read from the
    one root that holds it) before any work; returns the warnings.

    Raises one DataError listing the errors, one line each (RULES decides what is an error).
    """
    from dhkd.data.join import locate_categories

    if isinstance(roots, (str, Path)) or len(roots) == 1:
        by_root = {Path(roots if isinstance(roots, (str, Path)) else roots[0]): list(categories)}
    else:
        by_root = {}
        for category, folder in locate_categories(list(roots), categories).items():
            by_root.setdefault(folder.parent, []).append(category)
    warnings: list[Problem] = []
    for root, names in by_root.items():
        report = check_dataset(root, names)
        errors = report.errors
        if errors:
            lines = [str(p) for p in errors[:MAX_LISTED]]
            if len(errors) > MAX_LISTED:
                lines.append(f"... and {len(errors) - MAX_LISTED} more")
            raise DataError(
                f"{len(errors)} data error(s) in {', '.join(names)} of {report.root} (fix them; "
                f"`dhkd data check {report.root}` lists every problem):\n  " + "\n  ".join(lines)
            )
        warnings.extend(report.warnings)
    return warnings


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
