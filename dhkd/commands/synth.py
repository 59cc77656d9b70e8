"""`dhkd synth OUT --categories a,b`: write a synthetic dataset in MVTec layout."""

from __future__ import annotations

import argparse


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one category name, e.g. stripes,widget")
    return names


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic anomaly-detection dataset in MVTec layout",
        description="Write a synthetic dataset (textured or object categories with scratch, "
        "stain and missing-part defects and exact masks) in MVTec layout under OUT. "
        "The same arguments always give byte-identical files.",
    )
    parser.add_argument("out", metavar="OUT", help="output root; <OUT>/<category>/ is created")
    parser.add_argument(
        "--categories",
        type=_names,
        default=["stripes", "widget"],
        help="comma-separated category names (default: stripes,widget); names with stripe, "
        "grain, wood, grid, tile, carpet, ... are textures, others objects",
    )
    parser.add_argument("--image-size", type=int, default=128, help="side in pixels (128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--n-train", type=int, default=24, help="train/good images (24)")
    parser.add_argument("--n-test-good", type=int, default=8, help="test/good images (8)")
    parser.add_argument(
        "--n-test-defect", type=int, default=12, help="defective test images, over 3 types (12)"
    )
    parser.add_argument(
        "--difficulty",
        type=float,
        default=0.0,
        help="0..1: more varied good images and fainter defects (0, the plain generator)",
    )
    parser.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from dhkd.data.check import check_dataset, format_report
    from dhkd.data.synth import make_synthetic_dataset
    from dhkd.errors import DataError
    from dhkd.runs.paths import require_writable_dir

    require_writable_dir(args.out, "OUT")
    for flag, n in (("--n-test-good", args.n_test_good), ("--n-test-defect", args.n_test_defect)):
        if n < 1:
            raise DataError(
                f"{flag} {n} writes categories that cannot be evaluated (AUROC needs good and "
                f"defective test images; `dhkd data check` and `dhkd train` refuse them); give "
                f"{flag} 1 or more"
            )
    out = make_synthetic_dataset(
        args.out,
        args.categories,
        image_size=args.image_size,
        seed=args.seed,
        n_train=args.n_train,
        n_test_good=args.n_test_good,
        n_test_defect=args.n_test_defect,
        difficulty=args.difficulty,
    )
    print(f"wrote a synthetic dataset to {out.resolve()}")
    report = check_dataset(out)
    report.counts = {c: report.counts[c] for c in args.categories}
    print(format_report(report))
    return 0 if report.ok else 2
