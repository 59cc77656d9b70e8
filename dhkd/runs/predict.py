"""`dhkd predict`: score image files and folders with a trained model, write what it found.

OUT/overlays/<name>.png   the anomaly map over the image, at the image's own size
OUT/maps/<name>.npy       the raw map (float32, S x S at the run's input size)
OUT/predictions.csv|json  per file: score, decision at the stored threshold, or the error
Folders are searched recursively for png/jpg/jpeg/bmp files; <name> keeps the path below the
folder given, so test/good/000.png and test/crack/000.png do not collide. A file that cannot
be read is listed with its error and the others go on.

When every input is a test folder in MVTec layout (a `good` sub-folder, one sub-folder per
defect type, the images directly in them), the labels are known (good/ = good, any other
sub-folder = defective) and predictions.json "threshold_on_labels" holds how the stored
threshold decides on the scored images (dhkd.threshold.measures); otherwise it says
"labels": "unknown".
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from dhkd.data.images import load_image, read_raw
from dhkd.data.index import GOOD, IMAGE_SUFFIXES, image_files, natural_key, sub_folders
from dhkd.errors import DataError
from dhkd.inference import Predictor
from dhkd.threshold import Threshold, measures

CHUNK = 64  # images per feature pass (a multiple of the feature cache's batch of 16)
OUTPUTS = ("overlays", "maps", "predictions.csv", "predictions.json")  # what OUT receives
FIELDS = (
    "name", "path", "label", "status", "score", "decision", "threshold", "overlay", "map", "error"
)  # fmt: skip
LAYOUT = "good/ = good, any other sub-folder = defective"  # how known labels are read


@dataclass
class Prediction:
    name: str
    path: str
    label: int | None = None  # 0 good, 1 defective; None: unknown (layout_labels)
    status: str = "ok"  # ok | error
    score: float | None = None
    decision: str | None = None  # good | defective | None (no stored threshold)
    threshold: float | None = None
    overlay: str | None = None
    map: str | None = None
    error: str | None = None


def collect_images(inputs: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """(file, output name) for every image file given or found below a folder given."""
    found: list[tuple[Path, str]] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            files = [
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            ]
            files.sort(key=lambda p: tuple(natural_key(part) for part in p.relative_to(path).parts))
            found += [(p, p.relative_to(path).with_suffix("").as_posix()) for p in files]
        elif path.is_file():
            found.append((path, path.stem))
        else:
            raise DataError(f"{path} does not exist; pass image files or folders of images")
    if not found:
        raise DataError(
            f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, inputs))}"
        )
    names: dict[str, int] = {}
    out = []
    for path, name in found:
        count = names.get(name, 0)
        names[name] = count + 1
        out.append((path, name if count == 0 else f"{name}-{count}"))
    return out


def layout_labels(inputs: Sequence[str | Path]) -> dict[Path, int] | None:
    """Label of every image (0 good, 1 defective) when each input is a test folder in MVTec
    layout: a `good` sub-folder and no image outside its sub-folders; None otherwise."""
    labels: dict[Path, int] = {}
    for item in inputs:
        folder = Path(item).expanduser()
        if not (folder / GOOD).is_dir() or image_files(folder):
            return None
        for sub in sub_folders(folder):
            labels.update((p, int(sub.name != GOOD)) for p in image_files(sub))
    return labels


def threshold_on_labels(results: list[Prediction], threshold: Threshold | None) -> dict:
    """How the stored threshold decides on the scored images of known label: {"labels":
    "known", "layout", "n_good", "n_defective", and measures' precision, recall, fpr, ba,
    best_ba, ba_ratio} (a "note" instead of the measures when they cannot be computed);
    {"labels": "unknown"} when some image's label is not known."""
    if not results or any(p.label is None for p in results):
        return {"labels": "unknown"}
    scored = [p for p in results if p.status == "ok"]
    labels = np.array([p.label for p in scored], dtype=np.int64)
    out = {"labels": "known", "layout": LAYOUT, "n_good": int((labels == 0).sum())}
    out["n_defective"] = int(labels.sum())
    if threshold is None:
        return {**out, "note": "the weights hold no threshold (a trial stopped early)"}
    if not out["n_good"] or not out["n_defective"]:
        return {**out, "note": "measuring the threshold needs good and defective images"}
    scores = np.array([p.score for p in scored], dtype=np.float64)
    return {**out, **measures(scores, labels, threshold.value)}


def overlay(
    image_path: Path, anomaly_map: np.ndarray, span: tuple[float, float] | None
) -> np.ndarray:
    """BGR image at its own size with the map blended in, scaled by the run's map range (or by
    the map's own range when the weights have none)."""
    raw = read_raw(image_path, cv2.IMREAD_COLOR)
    low, high = span or (float(anomaly_map.min()), float(anomaly_map.max()))
    scaled = np.clip((anomaly_map - low) / max(high - low, 1e-12), 0.0, 1.0)
    heat = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.resize(heat, (raw.shape[1], raw.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(raw, 0.55, heat, 0.45, 0.0)


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict_files(
    predictor: Predictor,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    progress: bool = True,
) -> list[Prediction]:
    """Score every image of `inputs`, write overlays, maps and predictions.csv/.json to `out`.
    Labels are those of layout_labels when it knows every image's, else None."""
    out = Path(out)
    files = collect_images(inputs)
    known = layout_labels(inputs) or {}
    if not all(path in known for path, _ in files):
        known = {}
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    size = predictor.image_size
    threshold = predictor.threshold.value if predictor.threshold else None
    results: list[Prediction] = []
    bar = tqdm(total=len(files), desc="predict", unit="image", disable=not progress)
    for chunk in _chunks(files, CHUNK):
        loaded, images = [], []
        for path, name in chunk:
            try:
                images.append(load_image(path, size))
                loaded.append(Prediction(name, str(path), known.get(path), threshold=threshold))
            except DataError as exc:
                failed = Prediction(name, str(path), known.get(path), "error", error=str(exc))
                results.append(failed)
                bar.update(1)
        if not images:
            continue
        scores, maps = predictor.predict_images(np.stack(images))
        for pred, score, decision, amap in zip(
            loaded, scores, predictor.decide(scores), maps, strict=True
        ):
            pred.score, pred.decision = float(score), decision
            pred.map = f"maps/{pred.name}.npy"
            pred.overlay = f"overlays/{pred.name}.png"
            (out / pred.map).parent.mkdir(parents=True, exist_ok=True)
            (out / pred.overlay).parent.mkdir(parents=True, exist_ok=True)
            np.save(out / pred.map, amap.astype(np.float32))
            picture = overlay(Path(pred.path), amap, predictor.map_range)
            cv2.imwrite(str(out / pred.overlay), picture)
            results.append(pred)
            bar.update(1)
    bar.close()
    order = {name: i for i, (_, name) in enumerate(files)}
    results.sort(key=lambda p: order[p.name])
    write_predictions(out, results, predictor)
    return results


def write_predictions(out: Path, results: list[Prediction], predictor: Predictor) -> None:
    with open(out / "predictions.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for p in results:
            writer.writerow({k: "" if v is None else v for k, v in asdict(p).items()})
    unit = predictor.unit
    meta = {
        "method": unit.cfg.method,
        "category": unit.category,
        "seed": unit.seed,
        "image_size": predictor.image_size,
        "threshold": predictor.threshold.to_dict() if predictor.threshold else None,
        "map_range": list(predictor.map_range) if predictor.map_range else None,
        "images": len(results),
        "errors": sum(p.status == "error" for p in results),
        "defective": sum(p.decision == "defective" for p in results),
        "threshold_on_labels": threshold_on_labels(results, predictor.threshold),
        "predictions": [asdict(p) for p in results],
    }
    (out / "predictions.json").write_text(json.dumps(meta, indent=1))
