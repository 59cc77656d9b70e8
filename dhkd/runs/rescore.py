"""Score a trained run again under other `score` settings, without training it again.

How an image's per-level maps become its anomaly map and its score (fusion, smoothing,
pooling) acts after the model, so one trained run answers for every such setting. For each
unit of a run (category, seed) the level maps of its validation and test images are computed
once, as evaluation computes them; each setting then fuses, smooths and pools them, and the
metrics of both folds are taken. A setting may also change the `threshold` rule: the threshold
is chosen on the validation images' scores as training chooses it, and how it decides on the
test images (threshold.measures) is recorded beside the metrics; the maps of a score part are
fused once for every threshold rule that shares it. The run's own setting is scored first and
must give the numbers its metrics.json logged: when it does not, the data, code or device
changed since the run (`dhkd reproduce` tells which), and the scan says so.

A setting is chosen on the validation images of the run's selection protocol; the test
columns are what it would report, shown beside it, never the ground for the choice. Over
runs of three or more categories, the leave-one-category-out section asks how a default
carries over instead: per held-out category, the setting chosen on the OTHER categories' test
images, and its numbers on the held-out one (dhkd.report.loo).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from dhkd.config import describe_validation_error, parse_overrides
from dhkd.errors import ConfigError, DataError
from dhkd.metrics import evaluate_maps
from dhkd.report.loo import LooResult, to_markdown
from dhkd.runs.layout import RunFolder
from dhkd.runs.load import fetch_weights, load_run
from dhkd.runs.tracking import DEFAULT_TRACKING_URI
from dhkd.sections import ScoreConfig, ThresholdConfig
from dhkd.threshold import choose_threshold, measures
from dhkd.training.evaluate import METRICS

SCANNED = ("fusion", "smoothing_sigma", "pooling", "topk_fraction", "pool")
THRESHOLD = "threshold."  # grid keys of the threshold rule: "threshold.<key>"
THRESHOLD_SCANNED = ("mode", "fraction", "sigmas", "target_fpr")
# the key each threshold mode reads besides `mode`; the others are dropped from its settings
MODE_KEYS = {"between": "fraction", "good_sigma": "sigmas", "fpr": "target_fpr"}
# (fold, threshold.measures name) recorded per setting as "<fold>/threshold_<name>"
THRESHOLD_COLUMNS = (
    ("val", "ba_ratio"),
    ("test", "ba_ratio"),
    ("test", "recall"),
    ("test", "fpr"),
    ("test", "precision"),
)
THRESHOLD_METRIC = "threshold_ba_ratio"  # the threshold columns' criterion
DEFAULT_GRID: dict[str, list[Any]] = {
    "smoothing_sigma": [0.0, 2.0, 4.0, 6.0, 8.0],
    "pooling": ["max", "mean", "topk"],
    "topk_fraction": [0.01, 0.03, 0.05, 0.1],
}
AS_TRAINED = "as trained"
SHORT = {
    "image_auroc": "image AUROC",
    "pixel_auroc": "pixel AUROC",
    "pixel_aupro": "AU-PRO",
    "threshold_ba_ratio": "BA ratio",
    "threshold_recall": "recall",
    "threshold_fpr": "FPR",
    "threshold_precision": "precision",
}
LOGGED_TOLERANCE = 1e-6


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """["score.smoothing_sigma=2,4,6", "threshold.mode=f1_max,between"] ->
    {"smoothing_sigma": [2, 4, 6], "threshold.mode": ["f1_max", "between"]}: score keys bare,
    threshold keys with their prefix; each value is checked as `score` or `threshold` checks
    it."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not raw.strip():
            raise ConfigError(
                f"grid '{item}' must look like score.KEY=V1,V2,... or threshold.KEY=V1,V2,..., "
                "e.g. score.smoothing_sigma=2,4,6"
            )
        threshold = key.startswith(THRESHOLD)
        section = THRESHOLD if threshold else "score."
        name = key.removeprefix(section)
        known, model = (THRESHOLD_SCANNED, ThresholdConfig) if threshold else (SCANNED, ScoreConfig)
        if name not in known:
            raise ConfigError(
                f"grid key '{key}' cannot be scanned after training; choose from "
                + ", ".join(
                    [f"score.{k}" for k in SCANNED] + [THRESHOLD + k for k in THRESHOLD_SCANNED]
                )
                + " (score.level_norm is calibrated while training)"
            )
        values = [parse_overrides([f"v={v.strip()}"])["v"] for v in raw.split(",")]
        for value in values:
            try:
                model.model_validate({name: value})
            except ValidationError as exc:
                raise ConfigError(
                    describe_validation_error(exc).replace("'" + name, "'" + section + name)
                ) from None
        grid[key if threshold else name] = list(dict.fromkeys(values))
    return grid


def grid_settings(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The cross product of the grid as overrides of the run's own `score` and `threshold`,
    without duplicates: topk_fraction is dropped where the pooling is not topk, and
    threshold.fraction / sigmas / target_fpr where the threshold mode does not read them."""
    keys = list(grid)
    out: list[dict[str, Any]] = []
    for values in itertools.product(*(grid[k] for k in keys)):
        over = dict(zip(keys, values, strict=True))
        if over.get("pooling", "topk") != "topk":
            over.pop("topk_fraction", None)
        if THRESHOLD + "mode" in over:
            kept = MODE_KEYS.get(over[THRESHOLD + "mode"])
            for name in MODE_KEYS.values():
                if name != kept:
                    over.pop(THRESHOLD + name, None)
        if over not in out:
            out.append(over)
    return out


def has_thresholds(settings: list[dict[str, Any]]) -> bool:
    """Whether some setting changes the threshold rule (the scan then shows its columns)."""
    return any(k.startswith(THRESHOLD) for over in settings for k in over)


def score_part(over: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in over.items() if not k.startswith(THRESHOLD)}


def threshold_part(over: dict[str, Any]) -> dict[str, Any]:
    return {k[len(THRESHOLD) :]: v for k, v in over.items() if k.startswith(THRESHOLD)}


def setting_label(over: dict[str, Any]) -> str:
    if not over:
        return AS_TRAINED
    names = {
        "smoothing_sigma": "sigma",
        "topk_fraction": "top",
        THRESHOLD + "mode": "threshold",
        THRESHOLD + "fraction": "fraction",
        THRESHOLD + "sigmas": "sigmas",
        THRESHOLD + "target_fpr": "target_fpr",
    }
    return " ".join(f"{names.get(k, k)}={v}" for k, v in over.items())


@dataclass
class UnitScan:
    """One unit of a run under every setting: {label: {"val/<metric>": v, "test/<metric>": v}},
    the metrics of METRICS and the threshold measures of THRESHOLD_COLUMNS
    ("<fold>/threshold_<name>")."""

    run: str
    category: str
    seed: int
    selection: str
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    # largest difference between the as-trained scores and what the run logged (of this unit,
    # or of its category's mean over seeds for a study trial); None where nothing was logged
    logged_gap: float | None = None


def _gap(scores: list[dict[str, float]], logged: dict[str, float]) -> float | None:
    """Largest |mean of the scores - logged value| over the logged keys."""
    if not logged:
        return None
    return max(abs(float(np.mean([r[k] for r in scores])) - v) for k, v in logged.items())


def _logged_unit(metrics: dict[str, Any], category: str, seed: int) -> dict[str, float]:
    """A train folder's logged metrics of one unit (metrics.json "units")."""
    for u in metrics.get("units", []):
        if (u["category"], int(u["seed"])) == (category, seed):
            val = u.get("val") or {}
            out = {f"test/{m}": float(u[m]) for m in METRICS if m in u}
            out |= {f"val/{m}": float(val[m]) for m in METRICS if m in val}
            for fold, name in THRESHOLD_COLUMNS:
                logged = val if fold == "val" else u
                if f"threshold_{name}" in logged:
                    out[f"{fold}/threshold_{name}"] = float(logged[f"threshold_{name}"])
            return out
    return {}


def _logged_category(metrics: dict[str, float], category: str) -> dict[str, float]:
    """A study trial's logged metrics of one category ("<fold>/<category>/<metric>")."""
    out = {}
    wanted = [(fold, m) for fold in ("val", "test") for m in METRICS]
    wanted += [(fold, f"threshold_{name}") for fold, name in THRESHOLD_COLUMNS]
    for fold, m in wanted:
        key = f"{fold}/{category}/{m}"
        if key in metrics:
            out[f"{fold}/{m}"] = float(metrics[key])
    return out


@dataclass
class _Source:
    """Where a run's weights are and what it logged."""

    label: str
    checkpoint: Path
    logged: Any  # (category, seed | None) -> {"<fold>/<metric>": value}
    per_category: bool  # True: what was logged is each category's mean over its seeds
    selection: str | None


def _source(ref: str, workdir: str, tracking_uri: str | None) -> _Source:
    """A `dhkd train` output folder, or the MLflow run id of a study trial that kept weights."""
    run = RunFolder(ref)
    if run.root.is_dir():
        if not run.metrics.is_file():
            raise DataError(
                f"{run.root} holds no {RunFolder.METRICS}: pass the --out folder of `dhkd train`"
            )
        metrics = json.loads(run.metrics.read_text())
        return _Source(
            str(run.root),
            run.checkpoint,
            lambda cat, seed: _logged_unit(metrics, cat, seed),
            False,
            (metrics.get("selection") or {}).get("label"),
        )
    if not re.fullmatch(r"[0-9a-f]{32}", ref):
        raise DataError(
            f"{ref} is neither a folder (the --out of `dhkd train`) nor an MLflow run id "
            "(32 hex digits, from the MLflow UI or a report's provenance.csv)"
        )
    uri = tracking_uri or DEFAULT_TRACKING_URI
    logged = load_run(ref, uri, workdir).metrics
    checkpoint = fetch_weights(ref, uri, workdir)
    return _Source(
        f"run {ref}", checkpoint, lambda cat, _seed: _logged_category(logged, cat), True, None
    )


def _evaluate(unit, batches, split, score: dict[str, Any]) -> tuple[dict[str, float], Any]:
    """The metrics of `split` under `score`, and its image scores."""
    scores, maps = unit.fuse_batches(batches, score)
    values = evaluate_maps(maps, split.masks, image_scores=scores)
    return {m: float(values[m]) for m in METRICS}, scores


def _threshold_values(val, val_scores, test, test_scores, cfg, source) -> dict[str, float]:
    """The threshold of `cfg` chosen on the validation scores, and threshold.measures of its
    decisions on both folds, as THRESHOLD_COLUMNS names them."""
    value = choose_threshold(val_scores, val.labels, cfg, source).value
    on = {
        "val": measures(val_scores, val.labels, value),
        "test": measures(test_scores, test.labels, value),
    }
    return {f"{fold}/threshold_{name}": on[fold][name] for fold, name in THRESHOLD_COLUMNS}


def scan_run(
    ref: str | Path,
    settings: list[dict[str, Any]],
    data_root: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    tracking_uri: str | None = None,
) -> list[UnitScan]:
    """Every unit of a run (a `dhkd train` output folder or a study trial's MLflow run id)
    under its own score and under each of `settings`."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="dhkd-rescore-") as workdir:
        src = _source(str(ref), workdir, tracking_uri)
        return _scan(src, settings, data_root, device, progress)


def _scan(src: _Source, settings, data_root, device: str, progress: bool) -> list[UnitScan]:
    from dhkd.config import build_config
    from dhkd.data.selection import protocol_label
    from dhkd.features import default_feature_cache
    from dhkd.inference import Predictor
    from dhkd.training.data import CategoryData
    from dhkd.weights import load_weights

    weights = load_weights(src.checkpoint)
    cfg = build_config(weights["config"])
    fp = weights.get("fingerprint") or {}
    root = Path(data_root or (fp.get("data") or {}).get("root", ""))
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist here"
        raise DataError(f"the run's data root {root} {what}; pass --data ROOT of the same dataset")
    selection = src.selection or protocol_label(cfg.selection.protocol)
    base = cfg.score.fusion_args()
    source = "test" if cfg.selection.protocol == "test" else "validation"  # as training
    own = cfg.threshold.model_dump()
    rules = {}  # label -> (index of its score part, its threshold config)
    parts: list[dict[str, Any]] = []  # the distinct score settings, each fused once
    for over in [{}, *settings]:
        score = {**base, **score_part(over)}
        if score not in parts:
            parts.append(score)
        rule = ThresholdConfig.model_validate({**own, **threshold_part(over)})
        rules[setting_label(over)] = (parts.index(score), rule)
    scans, data = [], {}
    for entry in weights["units"]:
        category, seed = str(entry["category"]), int(entry["seed"])
        start = time.perf_counter()
        unit = Predictor.from_weights(weights, category, seed, device).unit
        if category not in data:
            data[category] = CategoryData(
                cfg, root, category, default_feature_cache(), torch.device(device), with_train=False
            )
        scan = UnitScan(src.label, category, seed, selection)
        val, test = data[category].validation, data[category].test()
        folds = [("val", val)] + ([] if test is val else [("test", test)])
        fused = {}  # (fold, score part) -> (metrics, image scores)
        for fold, split in folds:
            batches = list(unit.level_map_batches(split))
            for i, score in enumerate(parts):
                fused[fold, i] = _evaluate(unit, batches, split, score)
        if test is val:  # selection `test`: the validation images are the test images
            fused |= {("test", i): fused["val", i] for i in range(len(parts))}
        for label, (i, rule) in rules.items():
            (val_values, val_scores), (test_values, test_scores) = fused["val", i], fused["test", i]
            row = {f"val/{m}": v for m, v in val_values.items()}
            row |= {f"test/{m}": v for m, v in test_values.items()}
            row |= _threshold_values(val, val_scores, test, test_scores, rule, source)
            scan.results[label] = row
        if not src.per_category:
            scan.logged_gap = _gap([scan.results[AS_TRAINED]], src.logged(category, seed))
        scans.append(scan)
        if progress:
            took = time.perf_counter() - start
            count = f"{len(settings)} settings, {len(parts)} score parts"
            print(f"rescored {src.label}: {category}/seed{seed}, {count}, {took:.1f} s")
    if src.per_category:
        for category in data:
            units = [s for s in scans if s.category == category]
            gap = _gap([s.results[AS_TRAINED] for s in units], src.logged(category, None))
            for s in units:
                s.logged_gap = gap
    return scans


@dataclass
class SettingSummary:
    label: str
    means: dict[str, float]  # "<fold>/<metric>" -> mean over units
    higher: dict[str, int]  # units above their as-trained value
    lower: dict[str, int]


def summarise(scans: list[UnitScan]) -> list[SettingSummary]:
    """Per setting, the mean over units of each metric and how many units it raised or
    lowered against their as-trained setting."""
    if not scans:
        return []
    out = []
    for label in scans[0].results:
        keys = scans[0].results[label]
        means, higher, lower = {}, {}, {}
        for k in keys:
            vals = np.array([s.results[label][k] for s in scans])
            own = np.array([s.results[AS_TRAINED][k] for s in scans])
            means[k] = float(vals.mean())
            higher[k] = int((vals > own + 1e-12).sum())
            lower[k] = int((vals < own - 1e-12).sum())
        out.append(SettingSummary(label, means, higher, lower))
    return out


def chosen_metrics(thresholds: bool) -> tuple[str, ...]:
    """The metrics a setting is chosen on: METRICS, and the threshold's BA ratio when the grid
    changes the threshold rule."""
    return (*METRICS, THRESHOLD_METRIC) if thresholds else METRICS


def best_on_validation(summary: list[SettingSummary], thresholds: bool = False) -> dict[str, str]:
    """{metric: label of the setting with the highest mean validation value} over
    chosen_metrics(thresholds) (the first of equals, so the as-trained setting wins a tie)."""
    best = {}
    for m in chosen_metrics(thresholds):
        top = max(s.means[f"val/{m}"] for s in summary)
        best[m] = next(s.label for s in summary if s.means[f"val/{m}"] == top)
    return best


def format_scan(
    scans: list[UnitScan], summary: list[SettingSummary], thresholds: bool = False
) -> str:
    """The table of settings; with `thresholds` (the grid changes the threshold rule) also the
    columns of THRESHOLD_COLUMNS."""
    n = len(scans)
    selections = sorted({s.selection for s in scans})
    lines = [
        f"{n} unit(s); validation: {'; '.join(selections)}",
        "mean over units, % (units higher / lower than as trained); choose on the val columns",
    ]
    columns = [(fold, m) for fold in ("val", "test") for m in METRICS]
    if thresholds:
        columns += [(fold, f"threshold_{name}") for fold, name in THRESHOLD_COLUMNS]
    heads = [f"{fold} {SHORT[m]}" for fold, m in columns]
    width = max(len(s.label) for s in summary)
    lines.append(f"{'setting':<{width}}  " + "  ".join(f"{h:>16}" for h in heads))
    for s in summary:
        cells = []
        for fold, m in columns:
            k = f"{fold}/{m}"
            cells.append(f"{100 * s.means[k]:.2f} ({s.higher[k]}/{s.lower[k]})")
        lines.append(f"{s.label:<{width}}  " + "  ".join(f"{c:>16}" for c in cells))
    if thresholds:
        lines.append(
            "threshold: chosen on each unit's validation image scores by the setting's "
            "threshold rule; BA ratio = its balanced accuracy / the best threshold's"
        )
    best = best_on_validation(summary, thresholds)
    lines.append("best on validation: " + "; ".join(f"{SHORT[m]}: {v}" for m, v in best.items()))
    unchecked = [f"{s.run} {s.category}/seed{s.seed}" for s in scans if s.logged_gap is None]
    if unchecked:
        lines.append(
            "no logged metrics to check the as-trained scores against: " + ", ".join(unchecked)
        )
    for s in scans:
        if s.logged_gap is not None and s.logged_gap > LOGGED_TOLERANCE:
            lines.append(
                f"warning: {s.run} {s.category}/seed{s.seed} scores {s.logged_gap:.2e} away from "
                "its logged metrics as trained: the data, code or device changed since the "
                "run (`dhkd reproduce` tells which)"
            )
    return "\n".join(lines)


def scan_to_json(
    scans: list[UnitScan], summary: list[SettingSummary], thresholds: bool = False
) -> dict[str, Any]:
    return {
        "units": [
            {
                "run": s.run,
                "category": s.category,
                "seed": s.seed,
                "selection": s.selection,
                "logged_gap": s.logged_gap,
                "results": s.results,
            }
            for s in scans
        ],
        "summary": [
            {"setting": s.label, "mean": s.means, "higher": s.higher, "lower": s.lower}
            for s in summary
        ],
        "best_on_validation": best_on_validation(summary, thresholds) if summary else {},
    }


LOO_MIN_CATEGORIES = 3


def known_categories(refs: list[str]) -> list[str] | None:
    """The categories of the runs, read from each `dhkd train` folder's metrics.json before any
    scoring; None when a run is not such a folder (an MLflow run id: its categories are known
    once its weights are read; anything else: the scan names what is wrong)."""
    categories: list[str] = []
    for ref in refs:
        metrics = RunFolder(ref).metrics
        if not metrics.is_file():
            return None
        units = json.loads(metrics.read_text()).get("units") or []
        if not units:
            return None
        categories += [str(u["category"]) for u in units]
    return list(dict.fromkeys(categories))


def require_loo_categories(categories: list[str]) -> None:
    """Refuse a leave-one-category-out over fewer than three categories (ConfigError)."""
    if len(categories) >= LOO_MIN_CATEGORIES:
        return
    raise ConfigError(
        f"--leave-one-out needs runs over at least {LOO_MIN_CATEGORIES} categories (one held "
        f"out, two to choose on); the runs given have {len(categories)}: "
        f"{', '.join(categories) or 'none'}. Pass runs of more categories, e.g. one "
        "`dhkd train` folder per category, or study trials that carry several"
    )


def category_values(scans: list[UnitScan]) -> dict[str, dict[str, dict[str, float]]]:
    """values[setting][category][metric]: the mean over the category's units (seeds, runs) of
    each test metric and test threshold measure ("threshold_<name>"), as
    dhkd.report.loo.leave_one_out takes it."""
    categories = list(dict.fromkeys(s.category for s in scans))
    values: dict[str, dict[str, dict[str, float]]] = {}
    for label in scans[0].results if scans else []:
        values[label] = {}
        for category in categories:
            units = [s.results[label] for s in scans if s.category == category]
            keys = [k for k in units[0] if k.startswith("test/")]
            values[label][category] = {
                k.removeprefix("test/"): math.fsum(u[k] for u in units) / len(units) for k in keys
            }
    return values


def format_leave_one_out(result: LooResult) -> str:
    """A one-line header (what chooses, the in-sample choice) above loo's Markdown table: of
    the map metrics, or, chosen on the threshold's BA ratio, of the test threshold measures."""
    metric = SHORT[result.metric]
    header = (
        f"leave-one-category-out on test {metric}: for each held-out category the setting is "
        "chosen on the other categories' test images; the held-out category's own test images "
        f"never choose. In-sample choice (all {len(result.held_out)} categories): "
        f"{result.in_sample}"
    )
    title = f"Leave-one-category-out, chosen on test {metric}"
    if result.metric.startswith("threshold_"):
        shown = tuple(f"threshold_{name}" for fold, name in THRESHOLD_COLUMNS if fold == "test")
        return header + "\n\n" + to_markdown(result, title=title, metrics=shown)
    return header + "\n\n" + to_markdown(result, title=title)
