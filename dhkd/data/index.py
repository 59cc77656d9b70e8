"""Index of a dataset in MVTec AD layout (docs/design.md, "Data layout").

    <root>/<category>/train/good/*.png
    <root>/<category>/test/<defect>/*.png            (defect "good" = normal test images)
    <root>/<category>/ground_truth/<defect>/<stem>_mask.png   (also accepted: <stem>.png)

Indexing lists folders only (no image is opened), so it is fast; `dhkd.data.check` opens every
file and reports everything that is wrong at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dhkd.errors import DataError

MVTEC_CATEGORIES: tuple[str, ...] = (
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal_nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
GOOD = "good"
_MASK_SUFFIX = "_mask"
_FIX_LAYOUT = (
    "a dataset root holds <category>/train/good/*.png, <category>/test/<defect>/*.png and "
    "<category>/ground_truth/<defect>/<name>_mask.png; `dhkd synth OUT` writes an example"
)


@dataclass(frozen=True)
class Sample:
    """One image of a split; `mask_path` is None for good images."""

    path: Path
    label: int  # 0 good, 1 defective
    defect: str  # "good" or the defect folder name
    mask_path: Path | None


@dataclass(frozen=True)
class CategoryIndex:
    """All samples of one category: train (good only) and test (good and defective)."""

    root: Path
    category: str
    train: tuple[Sample, ...]
    test: tuple[Sample, ...]

    @property
    def path(self) -> Path:
        """The category folder, root / category."""
        return self.root / self.category

    @property
    def defect_types(self) -> tuple[str, ...]:
        """Sorted defect folder names of the test split, "good" excluded."""
        return tuple(sorted({s.defect for s in self.test if s.label == 1}))

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and defect type, e.g. {"train": {"good": 209}, "test": {...}}."""
        out: dict[str, dict[str, int]] = {}
        for split, samples in (("train", self.train), ("test", self.test)):
            per: dict[str, int] = {}
            for s in samples:
                per[s.defect] = per.get(s.defect, 0) + 1
            out[split] = dict(sorted(per.items(), key=lambda kv: (kv[0] != GOOD, kv[0])))
        return out


def natural_key(name: str) -> tuple:
    """Sort key that orders "img-2" before "img-10" (deterministic on any file names)."""
    parts = re.split(r"([0-9]+)", name)
    return tuple(int(t) if i % 2 else t.lower() for i, t in enumerate(parts)), name


def is_image_file(path: Path) -> bool:
    """True for a visible file whose suffix is in IMAGE_SUFFIXES (case-insensitive)."""
    return (
        not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    )


def image_files(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, naturally sorted; [] if the folder is missing."""
    if not folder.is_dir():
        return []
    files = (p for p in folder.iterdir() if is_image_file(p))
    return sorted(files, key=lambda p: natural_key(p.name))


def sub_folders(folder: Path) -> list[Path]:
    """Visible sub-folders of `folder`, sorted by name; [] if the folder is missing."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def mask_candidates(gt_folder: Path) -> dict[str, Path]:
    """Map of lower-case file name -> path for the image files of one ground_truth/<defect>."""
    return {p.name.lower(): p for p in image_files(gt_folder)}


def find_mask(image: Path, masks: dict[str, Path]) -> tuple[Path | None, bool]:
    """The mask of `image` among `masks` (from `mask_candidates`) and whether it is a fallback.

    Looks for <stem>_mask<suffix> first (the MVTec name), then <stem><suffix> (fallback).
    """
    stem = image.stem.lower()
    for suffix in IMAGE_SUFFIXES:
        hit = masks.get(f"{stem}{_MASK_SUFFIX}{suffix}")
        if hit is not None:
            return hit, False
    for suffix in IMAGE_SUFFIXES:
        hit = masks.get(f"{stem}{suffix}")
        if hit is not None:
            return hit, True
    return None, False


def looks_like_category(folder: Path) -> bool:
    """A category folder has a train/ or a test/ sub-folder."""
    return (folder / "train").is_dir() or (folder / "test").is_dir()


def require_root(root: str | Path) -> Path:
    """`root` as a Path; DataError with a fix-it message when it is not a folder."""
    path = Path(root).expanduser()
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise DataError(f"dataset root {path} {what}; {_FIX_LAYOUT}")
    return path


def list_categories(root: str | Path) -> list[str]:
    """Sorted names of the sub-folders of `root` that have a train/ or test/ folder."""
    path = require_root(root)
    return [p.name for p in sub_folders(path) if looks_like_category(p)]


def index_category(root: str | Path, category: str) -> CategoryIndex:
    """Index one category without opening any image.

    Raises DataError (saying how to fix it) when root, the category or train/good is missing or
    holds no image, when there are no test images, or when a defective test image has no mask.
    Run `dhkd data check ROOT` for a full report of every problem.
    """
    path = require_root(root)
    folder = path / category
    if not folder.is_dir():
        found = list_categories(path)
        raise DataError(
            f"category {category!r} not found in {path} (found: {', '.join(found) or 'none'}); "
            f"pass one of those or fix the root"
        )
    train = tuple(Sample(p, 0, GOOD, None) for p in image_files(folder / "train" / GOOD))
    if not train:
        raise DataError(
            f"{folder / 'train' / GOOD} is missing or holds no image "
            f"({', '.join(IMAGE_SUFFIXES)}); put the defect-free training images there"
        )
    test = _index_test(folder)
    if not test:
        raise DataError(
            f"{folder / 'test'} holds no image; put test images in test/good/ and "
            f"test/<defect>/ (with masks in ground_truth/<defect>/<name>_mask.png)"
        )
    return CategoryIndex(root=path, category=category, train=train, test=tuple(test))


def _index_test(folder: Path) -> list[Sample]:
    samples: list[Sample] = []
    missing: list[Path] = []
    for defect_dir in sub_folders(folder / "test"):
        defect = defect_dir.name
        images = image_files(defect_dir)
        if defect == GOOD:
            samples.extend(Sample(p, 0, GOOD, None) for p in images)
            continue
        masks = mask_candidates(folder / "ground_truth" / defect)
        for img in images:
            mask, _ = find_mask(img, masks)
            if mask is None:
                missing.append(img)
            samples.append(Sample(img, 1, defect, mask))
    if missing:
        shown = ", ".join(str(p) for p in missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise DataError(
            f"{len(missing)} defective test image(s) of {folder} have no mask: {shown}; add "
            f"ground_truth/<defect>/<name>_mask.png for each (run `dhkd data check` for the list)"
        )
    return samples
