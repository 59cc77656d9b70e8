"""`dhkd predict`: score new images with a trained model (a checkpoint file or an MLflow run)."""

from __future__ import annotations

import argparse


def add_weights_source(p: argparse.ArgumentParser) -> None:
    """--checkpoint PATH | --run RUN_ID [--tracking-uri], --category, --seed, --device."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint.pt written by `dhkd train`")
    source.add_argument("--run", metavar="RUN_ID", help="MLflow run of a study trial")
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (sqlite:///runs/mlflow.db)")
    p.add_argument("--category", default=None, help="category, when the weights hold several")
    p.add_argument("--seed", type=int, default=None, help="seed (default: the first one kept)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="anomaly maps, scores and good/defective decisions for new images",
        description="Score image files or folders (searched recursively; png, jpg, bmp; any "
        "size, RGB or gray) with trained weights. Writes OUT/overlays/<name>.png (map over "
        "the image), OUT/maps/<name>.npy (raw map at the run's input size) and "
        "OUT/predictions.csv / .json (score, decision at the threshold stored with the "
        "weights). A file that cannot be read is listed there with its error; the rest go on. "
        "When every folder given is a test folder in MVTec layout (good/ and one sub-folder per "
        "defect type), the labels are known and the stored threshold's precision, recall, "
        "false-alarm rate and balanced accuracy on them are printed and written to "
        "predictions.json.",
    )
    add_weights_source(p)
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def load_predictor(args: argparse.Namespace, workdir: str):
    from dhkd.inference import Predictor

    if args.checkpoint:
        path = args.checkpoint
    else:
        from dhkd.runs.load import fetch_weights
        from dhkd.runs.tracking import DEFAULT_TRACKING_URI

        path = fetch_weights(args.run, args.tracking_uri or DEFAULT_TRACKING_URI, workdir)
    return Predictor.from_checkpoint(
        path, category=args.category, seed=args.seed, device=args.device
    )


def labels_line(summary: dict) -> str:
    """One line on the stored threshold against known labels (runs.predict.threshold_on_labels)."""
    if summary["labels"] == "unknown":
        return (
            "labels unknown: to measure the stored threshold, pass test folders in MVTec layout "
            "(good/ and one sub-folder per defect type)"
        )
    head = (
        f"labels known ({summary['layout']}): {summary['n_good']} good, "
        f"{summary['n_defective']} defective"
    )
    if "note" in summary:
        return f"{head}; {summary['note']}"
    return (
        f"{head}; at the stored threshold precision {summary['precision']:.3f}, recall "
        f"{summary['recall']:.3f}, false-alarm rate {summary['fpr']:.3f}, balanced accuracy "
        f"{summary['ba']:.3f} = {summary['ba_ratio']:.3f} of the best threshold's "
        f"({summary['best_ba']:.3f})"
    )


def run(args: argparse.Namespace) -> int:
    import tempfile

    from dhkd.runs.paths import require_not_input, require_outside, require_writable_dir
    from dhkd.runs.predict import OUTPUTS, predict_files, threshold_on_labels

    out = require_writable_dir(args.out, "--out")
    inputs = [*args.images, *([args.checkpoint] if args.checkpoint else [])]
    require_not_input(out, inputs, "--out")
    require_outside(out, [out / name for name in OUTPUTS], inputs, "--out")
    with tempfile.TemporaryDirectory(prefix="dhkd-predict-") as tmp:
        predictor = load_predictor(args, tmp)
        results = predict_files(predictor, args.images, args.out, progress=not args.quiet)
    bad = [p for p in results if p.status == "error"]
    defective = sum(p.decision == "defective" for p in results)
    t = predictor.threshold
    rule = (
        f"threshold {t.value:.6g} ({t.mode}, chosen on {t.source})"
        if t
        else "no threshold (weights of a trial stopped early: scores only)"
    )
    print(
        f"{len(results) - len(bad)} images scored, {defective} defective at {rule}; "
        f"wrote {args.out}/predictions.csv, predictions.json, overlays/, maps/"
    )
    print(labels_line(threshold_on_labels(results, t)))
    for p in bad:
        print(f"could not read {p.path}: {p.error}")
    return 1 if bad else 0
