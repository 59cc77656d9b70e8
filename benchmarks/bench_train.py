"""Training and inference throughput of a method per preset (images per second).

    .venv/bin/python benchmarks/bench_train.py [--presets quick paper] [--method dhkd]
        [--images 32] [--device auto] [--out FILE]

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
from dhkd.methods.registry import get_method, make_unit, method_names
from dhkd.training.runtime import peak_memory_mb, resolve_device

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
    unit = make_unit(cfg, "bench", 0, split, device)
    stage_s = {}
    for stage in get_method(method).stages(cfg):
        unit.run_epoch(stage.name, 1)  # warm-up (allocations, lazy init)
        _sync(device)
        start = time.perf_counter()
        unit.run_epoch(stage.name, 2)
        _sync(device)
        stage_s[stage.name] = time.perf_counter() - start
        unit.finish_stage(stage.name)
    start = time.perf_counter()
    extract_features(cfg, images, device)
    unit.predict(split)
    _sync(device)
    infer_s = time.perf_counter() - start
    return {
        "preset": preset,
        "method": method,
        "device": str(device),
        "images": n_images,
        "image_size": size,
        "backbone": cfg.backbone.name,
        **{f"{name}_images_per_s": n_images / sec for name, sec in stage_s.items()},
        "train_images_per_s": n_images / sum(stage_s.values()),
        "inference_images_per_s": n_images / infer_s,
        **peak_memory_mb(device),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["quick", "paper"])
    parser.add_argument("--method", default="dhkd", choices=method_names())
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", help="JSON file to write (default results/train_<method>.json)")
    args = parser.parse_args()
    rows = []
    for preset in args.presets:
        r = bench_preset(preset, args.method, args.images, args.device)
        rows.append(r)
        stages = ", ".join(
            f"{k.removesuffix('_images_per_s')} {v:.2f}"
            for k, v in r.items()
            if k.endswith("_images_per_s")
            and k not in ("train_images_per_s", "inference_images_per_s")
        )
        print(
            f"{r['method']} {r['preset']:6s} ({r['backbone']}, {r['device']}): train "
            f"{r['train_images_per_s']:.2f} img/s ({stages}), inference "
            f"{r['inference_images_per_s']:.2f} img/s, peak RSS {r['peak_rss_mb']:.0f} MB"
            + (f", peak GPU {r['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in r else ""),
            flush=True,
        )
    out = Path(args.out) if args.out else RESULTS / f"train_{args.method}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
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
