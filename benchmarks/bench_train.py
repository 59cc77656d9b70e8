"""Training and inference throughput of a method per preset (images per second).

    .venv/bin/python benchmarks/bench_train.py [--presets quick paper] [--method dhkd]
        [--images 32] [--device auto]

Training: one teacher epoch and one student epoch over N cached-feature images (what a study
trial repeats every epoch). Inference: images -> backbone -> anomaly maps and scores.
The paper preset runs with random backbone weights here (no hub access); speed does not depend
on the weights. Writes benchmarks/results/train_<method>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from dhkd.config import load_config
from dhkd.features import CachedSplit, extract_features
from dhkd.train import peak_memory_mb, resolve_device
from dhkd.units import make_unit

RESULTS = Path(__file__).resolve().parent / "results"


def _split(cfg, images: np.ndarray, device) -> CachedSplit:
    n, size = len(images), cfg.data.image_size
    labels = np.arange(n) % 2
    masks = np.zeros((n, size, size), np.uint8)
    masks[labels == 1, size // 4 : size // 2, size // 4 : size // 2] = 1
    feats = extract_features(cfg, images, device)
    return CachedSplit(feats, images, labels.astype(np.int64), masks, tuple(map(str, range(n))))


def bench_preset(preset: str, method: str, n_images: int, device_name: str) -> dict:
    overrides = {"method": method, "optim.device": device_name}
    if preset == "paper":
        overrides["backbone.pretrained"] = False
    cfg = load_config(preset, overrides=overrides)
    device = resolve_device(cfg.optim.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    size = cfg.data.image_size
    images = np.random.default_rng(0).integers(0, 256, (n_images, size, size, 3), dtype=np.uint8)
    split = _split(cfg, images, device)
    unit = make_unit(cfg, "bench", 0, split, split, device)
    unit.teacher_epoch(1)  # warm-up (allocations, lazy init)
    _sync(device)
    start = time.perf_counter()
    unit.teacher_epoch(2)
    unit.finish_teacher()
    _sync(device)
    teacher_s = time.perf_counter() - start
    unit.student_epoch(1)
    _sync(device)
    start = time.perf_counter()
    unit.student_epoch(2)
    _sync(device)
    student_s = time.perf_counter() - start
    start = time.perf_counter()
    extract_features(cfg, images, device)
    unit.predict()
    _sync(device)
    infer_s = time.perf_counter() - start
    return {
        "preset": preset,
        "method": method,
        "device": str(device),
        "images": n_images,
        "image_size": size,
        "backbone": cfg.backbone.name,
        "teacher_images_per_s": n_images / teacher_s,
        "student_images_per_s": n_images / student_s,
        "train_images_per_s": n_images / (teacher_s + student_s),
        "inference_images_per_s": n_images / infer_s,
        **peak_memory_mb(device),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["quick", "paper"])
    parser.add_argument("--method", default="dhkd", choices=["dhkd", "bikd"])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    rows = []
    for preset in args.presets:
        r = bench_preset(preset, args.method, args.images, args.device)
        rows.append(r)
        print(
            f"{r['method']} {r['preset']:6s} ({r['backbone']}, {r['device']}): train "
            f"{r['train_images_per_s']:.2f} img/s (teacher {r['teacher_images_per_s']:.2f}, "
            f"student {r['student_images_per_s']:.2f}), inference "
            f"{r['inference_images_per_s']:.2f} img/s, peak RSS {r['peak_rss_mb']:.0f} MB"
            + (f", peak GPU {r['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in r else ""),
            flush=True,
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"train_{args.method}.json"
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor(),
        "load_avg_1m": os.getloadavg()[0],
    }
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
