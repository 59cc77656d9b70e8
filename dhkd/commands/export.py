"""`dhkd export`: trained weights -> an ONNX graph from image to (score, map), checked."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from dhkd.commands.predict import add_weights_source

    p = sub.add_parser(
        "export",
        help="write an ONNX inference graph (image -> score, anomaly map), checked on the spot",
        description="Export trained weights as one ONNX graph: input `image` float32 "
        "(B, 3, S, S), RGB in [0, 1] at the run's input size S; outputs `score` (B,) and "
        "`anomaly_map` (B, S, S), features kept in float32 (training rounds them to float16 "
        "as its feature cache stores them). The file is run with onnxruntime on check images "
        "and compared with the same graph in PyTorch (maps must agree within 1e-4, times the "
        "largest map value when it is above 1) and with `dhkd predict` (the difference is "
        "printed). Needs the [export] extra (onnx, onnxscript, onnxruntime).",
    )
    add_weights_source(p)
    p.add_argument("--format", choices=["onnx"], default="onnx", help="onnx (the only one)")
    p.add_argument("--out", required=True, help="output file, e.g. model.onnx")
    p.add_argument(
        "--check-images",
        nargs="*",
        default=[],
        metavar="PATH",
        help="images or folders to check the graph on (default: generated images)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import tempfile

    import numpy as np

    from dhkd.commands.predict import load_predictor
    from dhkd.data.images import load_image
    from dhkd.export import export_onnx
    from dhkd.runs.paths import require_not_input, require_writable_file
    from dhkd.runs.predict import collect_images

    require_writable_file(args.out, "--out")
    inputs = [*([args.checkpoint] if args.checkpoint else []), *args.check_images]
    require_not_input(args.out, inputs, "--out")
    if args.device != "cpu":
        args.device = "cpu"  # the export traces on the CPU
    with tempfile.TemporaryDirectory(prefix="dhkd-export-") as tmp:
        predictor = load_predictor(args, tmp)
    size = predictor.image_size
    if args.check_images:
        files = collect_images(args.check_images)[:16]
        images = np.stack([load_image(path, size) for path, _ in files])
    else:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    check = export_onnx(predictor, args.out, images)
    batch = "any batch size" if check["batch"] == "any" else "one image per call"
    print(
        f"wrote {check['path']} ({check['bytes'] / 2**20:.1f} MiB, {batch}); onnxruntime vs "
        f"PyTorch on {check['images']} images: max map diff {check['max_map_diff']:.2e}, "
        f"max score diff {check['max_score_diff']:.2e} (maps up to {check['max_map']:.3g}); "
        f"vs `dhkd predict` (float16 features): max map diff {check['cache_map_diff']:.2e}, "
        f"max score diff {check['cache_score_diff']:.2e}"
    )
    return 0
