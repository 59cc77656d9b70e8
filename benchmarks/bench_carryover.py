"""Do the presets carry over? DHKD, BiKD and the kNN reference on variants of the real categories.

    .venv/bin/python benchmarks/bench_carryover.py [--categories bottle cookie]
        [--variants gray rotated zoomed shrunk] [--methods dhkd bikd knn] [--preset quick]
        [--data ROOT ...] [--work DIR]

The quick presets were chosen on bottle and cookie. Real categories that are not in
../shared/data cannot be measured on this machine, so this benchmark makes new categories out of
the ones it has, each changing one thing that differs across MVTec AD's fifteen:

- gray: luma only, replicated to three channels (grid, screw and zipper are grayscale);
- rotated: every image and mask turned by its own random angle about the centre, the uncovered
  corners filled with the median colour of the image's border (screw and metal_nut are not
  aligned);
- zoomed: the central half of every image, enlarged twice (larger defects and surface texture,
  as in carpet or hazelnut); a defective test image whose defect lies outside the crop is left
  out, since its label would be wrong;
- shrunk: every image at half size in the middle of a frame of its border's median colour
  (small defects on small objects, as in screw or capsule).

Variants are written once, in MVTec layout, under --work (default: a temporary folder), and each
(variant, method) is timed and scored as bench_methods.py does (a process per run, cold feature
cache). A variant's row passes when each of its test metrics is at least the kNN's on that
variant minus 0.005, the acceptance bound of `dhkd train` with defaults. The variants share
their images with the categories they come from, so they test robustness to these changes, not
performance on new objects. Writes benchmarks/results/carryover_<preset>.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_methods import DEFAULT_ROOTS, METRICS, RESULTS, find_root
from bench_methods import main as bench_methods

from dhkd.data.index import index_category
from dhkd.data.publish import publish_folder

BOUND = 0.005
Transform = Callable[[np.ndarray, np.ndarray | None, int], tuple[np.ndarray, np.ndarray | None]]


def _angle(seed: int) -> float:
    return float(np.random.default_rng(seed).uniform(0.0, 360.0))


def _background(image: np.ndarray) -> tuple[float, ...]:
    """The median colour of the image's outermost pixels: the fill for uncovered corners."""
    ring = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return tuple(float(v) for v in np.median(ring, axis=0))


def gray(image: np.ndarray, mask: np.ndarray | None, seed: int):
    luma = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return cv2.cvtColor(luma, cv2.COLOR_GRAY2BGR), mask


def rotated(image: np.ndarray, mask: np.ndarray | None, seed: int):
    height, width = image.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), _angle(seed), 1.0)

    def warp(array: np.ndarray, interpolation: int, fill: tuple[float, ...]) -> np.ndarray:
        return cv2.warpAffine(array, turn, (width, height), flags=interpolation, borderValue=fill)

    out_mask = None if mask is None else warp(mask, cv2.INTER_NEAREST, (0,))
    return warp(image, cv2.INTER_LINEAR, _background(image)), out_mask


def zoomed(image: np.ndarray, mask: np.ndarray | None, seed: int):
    height, width = image.shape[:2]
    top, left = height // 4, width // 4

    def grow(array: np.ndarray, interpolation: int) -> np.ndarray:
        crop = array[top : top + height // 2, left : left + width // 2]
        return cv2.resize(crop, (width, height), interpolation=interpolation)

    return grow(image, cv2.INTER_CUBIC), None if mask is None else grow(mask, cv2.INTER_NEAREST)


def shrunk(image: np.ndarray, mask: np.ndarray | None, seed: int):
    height, width = image.shape[:2]
    top, left = height // 4, width // 4
    bottom, right = height - top - height // 2, width - left - width // 2

    def shrink(array: np.ndarray, interpolation: int, fill: tuple[float, ...]) -> np.ndarray:
        small = cv2.resize(array, (width // 2, height // 2), interpolation=interpolation)
        return cv2.copyMakeBorder(small, top, bottom, left, right, cv2.BORDER_CONSTANT, value=fill)

    out_mask = None if mask is None else shrink(mask, cv2.INTER_NEAREST, (0,))
    return shrink(image, cv2.INTER_AREA, _background(image)), out_mask


VARIANTS: dict[str, Transform] = {
    "gray": gray,
    "rotated": rotated,
    "zoomed": zoomed,
    "shrunk": shrunk,
}


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), array):
        raise SystemExit(f"could not write {path}")


def derive(root: Path, category: str, variant: str, out_root: Path) -> tuple[str, int]:
    """Write <out_root>/<category>_<variant> in MVTec layout; its name and the defective test
    images left out (their defect is outside the transformed frame). The folder is published
    whole (dhkd.data.publish), so a killed run leaves none; a finished one is reused."""
    name = f"{category}_{variant}"
    out = out_root / name
    dropped_file = out / ".dropped"
    if dropped_file.exists():
        return name, int(dropped_file.read_text())
    transform = VARIANTS[variant]
    index = index_category(root, category)

    def fill(tmp: Path) -> None:
        dropped = 0
        for split, samples in (("train", index.train), ("test", index.test)):
            for sample in samples:
                rel = sample.path.relative_to(index.path / split)
                seed = zlib.crc32(f"{category}/{split}/{rel}".encode())
                image = cv2.imread(str(sample.path), cv2.IMREAD_COLOR)
                mask = None
                if sample.mask_path is not None:
                    mask = cv2.imread(str(sample.mask_path), cv2.IMREAD_GRAYSCALE)
                    mask = cv2.resize(mask, image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
                image, mask = transform(image, mask, seed)
                if sample.label == 1 and (mask is None or not mask.any()):
                    dropped += 1
                    continue
                _write(tmp / split / rel.with_suffix(".png"), image)
                if mask is not None:
                    _write(tmp / "ground_truth" / sample.defect / f"{rel.stem}_mask.png", mask)
        (tmp / ".dropped").write_text(str(dropped))

    publish_folder(out, fill, lambda done: (done / ".dropped").exists())
    return name, int(dropped_file.read_text())


def verdicts(rows: list[dict]) -> list[dict]:
    """Per derived category and method other than knn: each metric's margin over kNN - BOUND."""
    knn = {row["category"]: row for row in rows if row["method"] == "knn"}
    out = []
    for row in rows:
        ref = knn.get(row["category"])
        if row["method"] == "knn" or ref is None:
            continue
        margins = {m: row[m] - (ref[m] - BOUND) for m in METRICS}
        out.append(
            {
                "category": row["category"],
                "method": row["method"],
                "margins": margins,
                "passes": all(v >= 0 for v in margins.values()),
                "wall_ratio": row["wall_s"] / ref["wall_s"],
            }
        )
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--categories", nargs="+", default=["bottle", "cookie"])
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--methods", nargs="+", default=["knn", "dhkd", "bikd"])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--data", nargs="+", type=Path, default=DEFAULT_ROOTS)
    parser.add_argument("--work", type=Path, help="folder for the derived categories (kept)")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/...)")
    args = parser.parse_args(argv)
    if "knn" not in args.methods:
        raise SystemExit("--methods must include knn: every row is judged against it")
    with tempfile.TemporaryDirectory(prefix="dhkd-carryover-") as tmp:
        work = (args.work or Path(tmp)).resolve()
        names, dropped = [], {}
        for category in args.categories:
            root = find_root(category, args.data)
            for variant in args.variants:
                name, dropped[name] = derive(root, category, variant, work)
                names.append(name)
                print(f"{name}: derived under {work} ({dropped[name]} defective images left out)")
        out = args.out or RESULTS / f"carryover_{args.preset}.json"
        bench_args = ["--categories", *names, "--methods", *args.methods,
                      "--preset", args.preset, "--data", str(work), "--out", str(out)]  # fmt: skip
        report = bench_methods(bench_args)
    report["meta"]["dropped_defective_images"] = dropped
    report["verdicts"] = verdicts(report["results"])
    out.write_text(json.dumps(report, indent=2))
    for v in report["verdicts"]:
        margins = " / ".join(f"{v['margins'][m]:+.3f}" for m in METRICS)
        status = "ok  " if v["passes"] else "FAIL"
        print(f"{status} {v['category']:16s} {v['method']:5s} margin over kNN-{BOUND}: {margins}"
              f"  wall {v['wall_ratio']:.1f}x kNN")  # fmt: skip
    failed = sum(not v["passes"] for v in report["verdicts"])
    print(f"{len(report['verdicts']) - failed} of {len(report['verdicts'])} rows within the bound")
    return report


if __name__ == "__main__":
    main()
