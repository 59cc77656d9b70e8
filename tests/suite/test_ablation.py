"""Ablation tables of a suite document on studies built in memory: the default row (found in
the study, or borrowed from the comparison study), means with seed spread, paired tests, and
the Markdown / LaTeX / CSV forms."""

from __future__ import annotations

import pytest

from dhkd.report.collect import StudyData, Trial
from dhkd.study.design.spec import parse_spec
from dhkd.suite import render as R
from dhkd.suite.ablation import build_ablation, delta, findings, kendall_agreement
from dhkd.suite.sensitivity import numeric, points, sensitivity_figure

CATS = ["a", "b", "c"]
SEEDS = [0, 1]
BASE = {
    "description": "Feature-noise level sigma. More words.",
    "method": "dhkd",
    "preset": "tiny",
    "data": {"synthetic": {"categories": CATS}},
    "seeds": SEEDS,
    "sampler": {"type": "grid"},
    "scheduler": {"type": "none"},
}


def _spec(name: str, scientific: dict, **extra):
    return parse_spec({**BASE, "name": name, "scientific": scientific, **extra})


def _trial(number: int, params: dict, level: float, val: float) -> Trial:
    """A COMPLETE trial whose unit (category i, seed s) scores level + i + s/10 on every metric."""
    units, metrics = [], {"objective/pixel_aupro": val, "val/pixel_aupro": val}
    for i, cat in enumerate(CATS):
        for seed in SEEDS:
            score = (level + i + seed / 10) / 100
            units.append({"category": cat, "seed": seed, "image_auroc": score,
                          "pixel_auroc": score, "pixel_aupro": score})  # fmt: skip
        for m in ("image_auroc", "pixel_auroc", "pixel_aupro"):
            metrics[f"test/{cat}/{m}"] = (level + i + 0.05) / 100
    for m in ("image_auroc", "pixel_auroc", "pixel_aupro"):
        metrics[f"test/{m}"] = (level + 1.05) / 100
    params = {k: str(v) for k, v in params.items()}
    return Trial(f"run{number}{level:g}", number, "COMPLETE", params, metrics, [], units)


def _data(name: str, scientific: dict, trials: list[Trial]) -> StudyData:
    spec = {"name": name, "scientific": scientific, "objective": {"metric": "pixel_aupro",
            "mode": "max"}, "seeds": SEEDS, "selection": "synthetic"}  # fmt: skip
    return StudyData(name, "sqlite:///unused.db", "1", "study", spec, CATS, trials)


METHOD = {"type": "categorical", "values": ["dhkd", "bikd"]}


def _suite(sigma_values=(0.0, 0.5)):
    sigma = {"type": "categorical", "values": list(sigma_values)}
    noise_spec = _spec("s-noise", {"noise.sigma": sigma})
    trials = [_trial(i, {"noise.sigma": v}, 80 - 5 * i, 0.5 - i / 10)
              for i, v in enumerate(sigma_values)]  # fmt: skip
    noise = _data("s-noise", {"noise.sigma": sigma}, trials)
    compare_spec = _spec("s-compare", {"method": METHOD})
    compare = _data("s-compare", {"method": METHOD}, [_trial(0, {"method": "dhkd"}, 85, 0.6),
                                          _trial(1, {"method": "bikd"}, 70, 0.4)])  # fmt: skip
    return (noise_spec, noise), (compare_spec, compare)


def test_the_default_row_is_borrowed_from_the_comparison_study() -> None:
    (spec, data), compare = _suite()
    ablation = build_ablation(spec, data, [(spec, data), compare])
    labels = [R.row_label(r) for r in ablation.rows]
    assert labels == ["σ 0.2 (default)", "σ 0.0", "σ 0.5"]  # the tiny preset's sigma
    base = ablation.baseline
    assert base.source == "study s-compare" and base.column.trial.run_id == "run085"
    assert ablation.cells[(base.key, "pixel_aupro")].value == pytest.approx(86.05)
    # seed spread: per seed, the mean over categories differs by 0.1 point
    assert ablation.cells[(base.key, "pixel_aupro")].std == pytest.approx(0.0707, abs=1e-3)
    assert delta(ablation, ablation.rows[1], "pixel_aupro") == pytest.approx(-5.0)


def test_paired_tests_run_over_category_seed_units() -> None:
    (spec, data), compare = _suite()
    ablation = build_ablation(spec, data, [(spec, data), compare])
    tests = ablation.tests["pixel_aupro"]
    assert [t.variant for t in tests] == ["σ 0.0", "σ 0.5"]
    assert all(t.n_pairs == 6 and t.pairing == "category x seed" for t in tests)
    assert all(t.p is not None and t.p < 0.05 for t in tests)  # every unit lower by 5 and 10
    assert tests[1].median_diff == pytest.approx(-10.0)
    assert tests[0].p_holm >= tests[0].p  # Holm over the table's two rows


def test_a_default_in_the_grid_is_its_own_baseline() -> None:
    (spec, data), compare = _suite(sigma_values=(0.0, 0.2, 0.5))
    ablation = build_ablation(spec, data, [(spec, data), compare])
    assert [r.baseline for r in ablation.rows] == [False, True, False]
    assert all(r.source == "" for r in ablation.rows)


def test_no_borrowing_across_different_setups() -> None:
    (spec, data), (cspec, cdata) = _suite()
    other = cspec.model_copy(update={"seeds": [0]})
    ablation = build_ablation(spec, data, [(spec, data), (other, cdata)])
    assert ablation.rows[0].label == "σ 0.0" and ablation.rows[0].baseline
    assert "the first row is the baseline instead" in ablation.notes[0]


def test_findings_and_agreement_say_what_the_rows_show() -> None:
    (spec, data), compare = _suite()
    ablation = build_ablation(spec, data, [(spec, data), compare])
    tau, picked, best = kendall_agreement(ablation, "pixel_aupro")
    assert picked == best == "σ 0.2" and tau == pytest.approx(1.0)
    text = findings(ablation)
    assert text[0] == "σ 0.0 vs σ 0.2: Image AUROC -5.0, Pixel AUROC -5.0, AU-PRO@0.3 -5.0 points."
    assert "Validation AU-PRO@0.3 picks σ 0.2; the test AU-PRO@0.3 picks the same row" in text[2]


def test_renderings_carry_the_means_deltas_and_markers() -> None:
    (spec, data), compare = _suite()
    ablation = build_ablation(spec, data, [(spec, data), compare])
    md = R.to_markdown(ablation)
    # exact two-sided p = 2/64 over 6 pairs, Holm x2 over the table's rows: 0.0625, no star
    assert "| σ 0.0 | 81.0 ± 0.1 (-5.0) | 81.0 ± 0.1 (-5.0) | 81.0 ± 0.1 (-5.0) | 50.0 |" in md
    assert ablation.tests["pixel_aupro"][0].p_holm == pytest.approx(0.0625)
    assert md.splitlines()[1] == "|:--|--:|--:|--:|--:|"
    tex = R.to_latex(ablation, "twocolumn")
    assert tex.startswith(r"\begin{table*}[t]") and r"\emph{(default)}" in tex
    assert r"{\scriptsize($-$5.0" in tex
    assert R.to_latex(ablation, "onecolumn").startswith(r"\begin{table}[t]")
    rows = list(R.to_csv(ablation).splitlines())
    assert rows[0].startswith("setting,baseline,metric,mean,std,seeds,delta,p,p_holm,pairs")
    assert len(rows) == 1 + 3 * 3


def test_sensitivity_figure_and_points() -> None:
    (spec, data), compare = _suite()
    ablation = build_ablation(spec, data, [(spec, data), compare])
    assert numeric(ablation)
    pts = points(ablation)
    assert len(pts) == 3 * 3 * 3  # values x categories x metrics
    assert [p["column"] for p in pts[::9]] == ["noise.sigma=0.0", "noise.sigma=0.2",
                                               "noise.sigma=0.5"]  # fmt: skip
    assert pts[0]["metric_key"] == "test/a/image_auroc" and pts[0]["run_id"] == "run080"
    fig = sensitivity_figure([ablation], "title")
    assert len(fig.axes) == 3
    method = build_ablation(*compare, [compare])  # `method` is no number: not in the figure
    assert not numeric(method) and sensitivity_figure([method], "t") is None
