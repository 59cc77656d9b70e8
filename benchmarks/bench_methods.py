"""DHKD, BiKD and the kNN reference side by side: what `dhkd train` with a preset costs and scores.

    .venv/bin/python benchmarks/bench_methods.py [--categories bottle cookie commutator
        metal_plate pcb] [--methods dhkd bikd knn] [--preset quick] [--data ROOT ...]
        [--features cold|warm] [--runs-dir DIR] [--loo [METHOD=]FILE ...] [--update-readme]
        [--render-only]

Each (category, method) runs `dhkd.training.fit.fit` in its own process, so that peak memory and CPU
time belong to that run alone: wall time and CPU time (user + system) of the fit, its feature /
train / evaluation seconds and the seconds of the validation passes at earlier epochs (every
optim.eval_every: the learning curve a study's scheduler reads), the process's peak resident
memory, image AUROC, pixel AUROC and AU-PRO on the category's test images (val_*: on the
images its selection protocol validates on), and the stored threshold's precision, recall, false
alarm rate and BA ratio on the test images. --features cold (default) starts every run from
an empty feature cache, so the backbone pass is part of its time, as in a first `dhkd train`;
warm extracts the features once per category beforehand and times the methods on cached
features. --runs-dir DIR keeps each run's folder, as `dhkd train --out` writes it, at
DIR/<method>-<category> (for `dhkd rescore DIR/dhkd-* --leave-one-out METRIC --out FILE`);
its wall time then includes writing the folder.

The categories (default: the five of ../shared/data) are looked up in the --data roots, then in
every dataset folder of ../shared/data next to the checkout. Writes
benchmarks/results/methods_<preset>.json (or --out) with the machine's load average before and
after each run (on a shared machine the times are upper bounds), and beside it a Markdown table
(.md): per category and method the costs and metrics, DHKD's and BiKD's differences to the kNN
and whether each is within 0.5 points of it, and under it the leave-one-category-out estimate of
each --loo file (the --out JSON of `dhkd rescore ... --leave-one-out METRIC`). --update-readme
also puts the table into benchmarks/README.md between its bench_methods markers;
--render-only writes the table from the existing JSON without running anything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parent / "README.md"
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DEFAULT_CATEGORIES = ("bottle", "cookie", "commutator", "metal_plate", "pcb")
METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")
PIXEL_METRICS = ("pixel_auroc", "pixel_aupro")
THRESHOLD_MEASURES = ("precision", "recall", "fpr", "ba_ratio")
REFERENCE = "knn"
BOUND = 0.005  # a method meets the bound where its value >= the kNN's - BOUND
LABELS = {"knn": "kNN", "dhkd": "DHKD", "bikd": "BiKD"}
# categories whose masks are not pixel annotations: their pixel metrics are approximate
APPROXIMATE_MASKS = {
    "pcb": "masks are the pixels where a test image differs from its defect-free template, "
    "inside the annotated boxes (not pixel annotations)"
}
BEGIN = "<!-- bench_methods:begin -->"
END = "<!-- bench_methods:end -->"
MISSING = "–"
MEETS, MISSES = "✓", "✗"


def dataset_roots(extra: list[Path], shared: Path = SHARED_DATA) -> list[Path]:
    """Where categories are looked up: the given roots in order, then each dataset folder
    (sub-folder) of `shared`, by name."""
    found = sorted(p for p in shared.iterdir() if p.is_dir()) if shared.is_dir() else []
    return [*extra, *found]


DEFAULT_ROOTS = dataset_roots([])  # the dataset folders of ../shared/data


def find_roots(categories: list[str], roots: list[Path], shared: Path = SHARED_DATA) -> dict:
    """{category: the first root that holds <category>/train}; SystemExit naming every
    category that none holds."""
    found = {}
    for category in categories:
        root = next((r for r in roots if (r / category / "train").is_dir()), None)
        if root is not None:
            found[category] = root.resolve()
    missing = [c for c in categories if c not in found]
    if missing:
        where = [str(r) for r in roots] or "nothing"
        absent = "" if shared.is_dir() else f" ({shared} does not exist)"
        raise SystemExit(
            f"categories {', '.join(missing)} not found under any of {where}{absent}; pass the "
            "dataset root that holds each (the folder with <category>/train) with --data ROOT"
        )
    return found


def find_root(category: str, roots: list[Path]) -> Path:
    """The first of `roots` that holds <category>/train (bench_carryover's lookup)."""
    return find_roots([category], roots)[category]


def run_one(
    method: str, preset: str, root: str, category: str, cache_dir: str, run_dir: str | None
) -> dict:
    """In the child process: one fit, timed (writing its run folder when run_dir is given);
    the row as a dict."""
    import torch

    from dhkd.config import load_config
    from dhkd.features import FeatureCache
    from dhkd.training.evaluate import TEST, VAL
    from dhkd.training.fit import fit

    cfg = load_config(preset, overrides={"method": method})
    cache = FeatureCache(cache_dir)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    result = fit(cfg, root, category, run_dir, progress=False, feature_cache=cache)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "category": category,
        "method": method,
        "preset": preset,
        "wall_s": wall,
        "cpu_s": cpu,
        "feature_s": result.feature_seconds,
        "train_s": result.train_seconds,
        "eval_s": result.eval_seconds,
        "monitor_s": result.monitor_seconds,
        "peak_rss_mb": after.ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "selection": cfg.selection.protocol,
        "run_dir": run_dir,
        **{m: result.metrics[f"{TEST}{m}"] for m in METRICS},
        **{f"val_{m}": result.metrics[f"{VAL}{m}"] for m in METRICS},
        **{f"threshold_{m}": result.metrics[f"{TEST}threshold_{m}"] for m in THRESHOLD_MEASURES},
    }


def fill_cache(preset: str, methods: list[str], root: str, category: str, cache_dir: str) -> None:
    """In the child process: compute every split's features each method's config needs."""
    from dhkd.config import load_config
    from dhkd.features import FeatureCache

    cache = FeatureCache(cache_dir)
    for method in methods:
        cfg = load_config(preset, overrides={"method": method})
        for split in ("train", "test"):
            cache.get(cfg, root, category, split)


def _child(args: list[str]) -> dict:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-4000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = time.perf_counter() - start
    return out


def run_all(args: argparse.Namespace, roots: dict[str, Path]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="dhkd-bench-") as tmp:
        for category, root in roots.items():
            shared = str(Path(tmp) / f"{category}-warm")
            if args.features == "warm":
                _child(["--preset", args.preset, "--child", "fill", ",".join(args.methods),
                        str(root), category, shared, "-"])  # fmt: skip
            for method in args.methods:
                cache = shared if args.features == "warm" else f"{tmp}/{category}-{method}"
                run_dir = (
                    str(args.runs_dir.resolve() / f"{method}-{category}") if args.runs_dir else "-"
                )
                load_before = os.getloadavg()[0]
                row = _child(["--preset", args.preset, "--child", "run", method, str(root),
                              category, cache, run_dir])  # fmt: skip
                row.update(features=args.features, load_avg_1m_before=load_before,
                           load_avg_1m_after=os.getloadavg()[0])  # fmt: skip
                rows.append(row)
                print(
                    f"{category:11s} {method:5s} wall {row['wall_s']:7.1f} s (features "
                    f"{row['feature_s']:.1f}, train {row['train_s']:.1f}, eval {row['eval_s']:.1f}"
                    f", earlier validation {row['monitor_s']:.1f})"
                    f"  cpu {row['cpu_s']:7.1f} s  peak RSS {row['peak_rss_mb']:6.0f} MiB  "
                    + " / ".join(f"{row[m]:.3f}" for m in METRICS)
                    + f"  BA ratio {row['threshold_ba_ratio']:.3f}  (load {load_before:.1f})",
                    flush=True,
                )
    return rows


# --- the Markdown table -------------------------------------------------------------------


def _label(method: str) -> str:
    return LABELS.get(method, method)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _pct(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.1f}"


def _num(value: float | None, digits: int) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def meets_bound(value: float, reference: float) -> bool:
    """At or above the reference's value minus 0.5 points (1e-12 for rounding)."""
    return value - reference >= -BOUND - 1e-12


def _delta_cell(row: dict | None, ref: dict | None) -> str:
    if row is None or ref is None:
        return MISSING
    parts = []
    for m in METRICS:
        diff = row[m] - ref[m]
        parts.append(f"{100 * diff:+.1f} {MEETS if meets_bound(row[m], ref[m]) else MISSES}")
    return " / ".join(parts)


def _cells(row: dict | None) -> list[str]:
    if row is None:
        return [MISSING] * 3
    cost = " / ".join((_num(row["wall_s"], 1), _num(row["cpu_s"], 1), _num(row["peak_rss_mb"], 0)))
    metrics = " / ".join(_pct(row[m]) for m in METRICS)
    return [cost, metrics, _num(row.get("threshold_ba_ratio"), 2)]


def _mean_row(rows: list[dict]) -> dict | None:
    if not rows:
        return None
    keys = ("wall_s", "cpu_s", "peak_rss_mb", *METRICS, "threshold_ba_ratio")
    return {k: _mean([r[k] for r in rows if r.get(k) is not None]) for k in keys}


def _machine_note(meta: dict, rows: list[dict]) -> str:
    loads = [r[k] for r in rows for k in ("load_avg_1m_before", "load_avg_1m_after") if k in r]
    load = f"{min(loads):.1f}–{max(loads):.1f}" if loads else MISSING
    cores = meta.get("cpu_count")
    return (
        f"Machine: {cores} cores ({meta.get('cpu', '?')}), Python {meta.get('python', '?')}; "
        f"1-minute load average {load} before and after the runs (above {cores} the times are "
        "upper bounds)."
    )


def render_table(report: dict) -> str:
    """The Markdown table of a results JSON (`main`'s report): a row per category, a mean row,
    the bound's tally and the footnotes."""
    meta, results = report["meta"], report["results"]
    by = {(r["category"], r["method"]): r for r in results}
    categories = list(dict.fromkeys(r["category"] for r in results))
    methods = list(dict.fromkeys(r["method"] for r in results))
    if REFERENCE in methods:
        methods = [REFERENCE, *(m for m in methods if m != REFERENCE)]
    compared = [m for m in methods if m != REFERENCE] if REFERENCE in methods else []
    approximate = [c for c in categories if c in APPROXIMATE_MASKS]

    head = ["category"]
    for m in methods:
        head += [f"{_label(m)} wall s / CPU s / peak MiB", f"{_label(m)} image / pixel / PRO %"]
        if m in compared:
            head.append(f"{_label(m)} − kNN (bound)")
        head.append(f"{_label(m)} BA ratio")
    lines = ["| " + " | ".join(head) + " |", "|:--|" + "--:|" * (len(head) - 1)]

    def line(name: str, get) -> str:
        cells = [name]
        for m in methods:
            cost, metrics, ba = _cells(get(m))
            cells += [cost, metrics]
            if m in compared:
                cells.append(_delta_cell(get(m), get(REFERENCE)))
            cells.append(ba)
        return "| " + " | ".join(cells) + " |"

    for c in categories:
        name = f"{c} ¹" if c in approximate else c
        lines.append(line(name, lambda m, c=c: by.get((c, m))))
    means = {m: _mean_row([by[(c, m)] for c in categories if (c, m) in by]) for m in methods}
    lines.append(line(f"**mean of {len(categories)}**", means.get))

    ref = _label(REFERENCE)
    notes = [
        f"Preset {meta.get('preset', '?')}, features {meta.get('features', '?')}, selection "
        f"{', '.join(sorted({r['selection'] for r in results}))}, {meta.get('date', '?')}. Metrics "
        "on the test images, %: image AUROC / pixel AUROC / AU-PRO; BA ratio: the stored "
        "threshold's balanced accuracy on the test images over the best threshold's.",
    ]
    if compared:
        notes.append(
            f"− {ref}: the method's value minus the {ref}'s, in points; {MEETS}: at or above "
            f"the {ref}'s minus {100 * BOUND:.1f} points, {MISSES}: below. The mean row compares "
            "the means."
        )
        for m in compared:
            pairs = [(by[(c, m)], by[(c, REFERENCE)]) for c in categories
                     if (c, m) in by and (c, REFERENCE) in by]  # fmt: skip
            met = sum(meets_bound(r[k], k_ref[k]) for r, k_ref in pairs for k in METRICS)
            notes.append(
                f"{_label(m)} meets the bound in {met} of {len(pairs) * len(METRICS)} "
                "(category, metric) pairs."
            )
    for c in approximate:
        notes.append(
            f"¹ {c}: {APPROXIMATE_MASKS[c]}; its pixel AUROC and AU-PRO, and the means that "
            "include them, are approximate."
        )
    notes.append(_machine_note(meta, results))
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


# --- leave-one-category-out (dhkd rescore --leave-one-out) ---------------------------------


def parse_loo(spec: str) -> tuple[str | None, Path]:
    """[METHOD=]FILE -> (METHOD or None, FILE)."""
    method, sep, path = spec.partition("=")
    return (method, Path(path)) if sep and "/" not in method else (None, Path(spec))


def loo_method(data: dict, path: Path) -> str:
    """The method of the runs a rescore JSON scanned: their config.yaml's `method`."""
    import yaml

    from dhkd.runs.layout import RunFolder

    methods = set()
    for unit in data.get("units") or []:
        config = RunFolder(unit["run"]).config
        if not config.is_file():
            raise SystemExit(
                f"{path}: the run folder {unit['run']} holds no {RunFolder.CONFIG}, so its method "
                f"is unknown; pass --loo METHOD={path}"
            )
        methods.add(yaml.safe_load(config.read_text())["method"])
    if len(methods) != 1:
        found = ", ".join(sorted(methods)) or "no runs"
        raise SystemExit(f"{path}: the runs it scanned have {found}; pass --loo METHOD={path}")
    return methods.pop()


def render_loo(spec: str, report: dict) -> str:
    """The held-out rows and estimate of one --loo file, with the kNN of the results beside
    them when there is one and the file is another method's."""
    from dhkd.report.loo import Baseline, HeldOut, LooResult, to_markdown
    from dhkd.report.tables import TITLES

    method, path = parse_loo(spec)
    if not path.is_file():
        raise SystemExit(
            f"--loo {spec}: {path} does not exist; pass the --out JSON of `dhkd "
            "rescore ... --leave-one-out METRIC`"
        )
    data = json.loads(path.read_text())
    if "leave_one_out" not in data:
        raise SystemExit(
            f"--loo {spec}: {path} has no 'leave_one_out'; write it with `dhkd "
            "rescore RUNS --leave-one-out METRIC --out FILE`"
        )
    method = method or loo_method(data, path)
    loo = {k: v for k, v in data["leave_one_out"].items() if k != "n_differ"}
    held_out = [HeldOut(**h) for h in loo.pop("held_out")]
    result = LooResult(held_out=held_out, **loo)
    knn = {r["category"]: r for r in report["results"] if r["method"] == REFERENCE}
    baseline = None
    if method != REFERENCE and knn:
        values = {c: {m: r[m] for m in METRICS} for c, r in knn.items()}
        baseline = Baseline(REFERENCE, _label(REFERENCE), values)
    title = (
        f"Leave-one-category-out: {_label(method)}, setting chosen on test "
        f"{TITLES.get(result.metric, result.metric)} ({path.name})"
    )
    text = to_markdown(result, baseline=baseline, title=title)
    approximate = [c for c in result.categories if c in APPROXIMATE_MASKS]
    for c in approximate:
        text += f"- {c}: {APPROXIMATE_MASKS[c]}; its pixel metrics are approximate.\n"
    return text


def render(report: dict, loo: list[str]) -> str:
    meta = report["meta"]
    parts = [f"### bench_methods, preset {meta.get('preset', '?')}\n", render_table(report)]
    parts += [render_loo(spec, report) for spec in loo]
    return "\n".join(parts)


def replace_section(text: str, body: str) -> str:
    """`text` with the part between the bench_methods markers replaced by `body`; without
    markers, the section is added at the end of the `## bench_methods.py` section (or of
    the text)."""
    block = f"{BEGIN}\n{body.rstrip()}\n{END}"
    if BEGIN in text and END in text:
        start, end = text.index(BEGIN), text.index(END) + len(END)
        return text[:start] + block + text[end:]
    heading = text.find("## bench_methods.py")
    following = text.find("\n## ", heading + 1) if heading >= 0 else -1
    if following < 0:
        return text.rstrip("\n") + "\n\n" + block + "\n"
    return text[:following].rstrip("\n") + "\n\n" + block + "\n" + text[following:]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--categories", nargs="+", default=list(DEFAULT_CATEGORIES))
    parser.add_argument("--methods", nargs="+", default=["dhkd", "bikd", "knn"])
    parser.add_argument("--preset", default="quick")
    parser.add_argument(
        "--data",
        nargs="+",
        type=Path,
        default=[],
        help=f"dataset roots searched before the folders of {SHARED_DATA}",
    )
    parser.add_argument("--features", choices=["cold", "warm"], default="cold")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/...)")
    parser.add_argument(
        "--runs-dir", type=Path, help="keep each run's folder at RUNS_DIR/<method>-<category>"
    )
    parser.add_argument(
        "--loo",
        action="append",
        default=[],
        metavar="[METHOD=]FILE",
        help="a `dhkd rescore --leave-one-out` JSON to show under the table (repeatable)",
    )
    parser.add_argument(
        "--update-readme", action="store_true", help="also put the table into benchmarks/README.md"
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="write the table from the existing --out JSON; run nothing",
    )
    parser.add_argument(
        "--child",
        nargs=6,
        metavar=("KIND", "METHOD", "ROOT", "CAT", "CACHE", "RUN_DIR"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args(argv)
    if args.child:
        kind, method, root, category, cache_dir, run_dir = args.child
        if kind == "fill":
            fill_cache(args.preset, method.split(","), root, category, cache_dir)
            print(json.dumps({}))
        else:
            run_dir = None if run_dir == "-" else run_dir
            print(json.dumps(run_one(method, args.preset, root, category, cache_dir, run_dir)))
        return {}
    out = args.out or RESULTS / f"methods_{args.preset}.json"
    if args.render_only:
        if not out.is_file():
            raise SystemExit(
                f"--render-only: {out} does not exist; run the benchmark first or "
                "pass its JSON with --out"
            )
        report = json.loads(out.read_text())
    else:
        roots = find_roots(args.categories, dataset_roots(args.data))
        rows = run_all(args, roots)
        meta = {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "preset": args.preset,
            "features": args.features,
            "date": time.strftime("%Y-%m-%d"),
            "runs_dir": str(args.runs_dir.resolve()) if args.runs_dir else None,
            "metrics": list(METRICS),
            "note": "load_avg_1m_* is the machine's load; above cpu_count the times are upper "
            "bounds",
        }
        report = {"meta": meta, "results": rows}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        print(f"wrote {out}")
    table = render(report, args.loo)
    md = out.with_suffix(".md")
    md.write_text(table)
    print(f"wrote {md}")
    if args.update_readme:
        README.write_text(replace_section(README.read_text(), table))
        print(f"updated {README}")
    return report


if __name__ == "__main__":
    main()
