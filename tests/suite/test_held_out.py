"""Leave-one-category-out over a suite's ablation rows (dhkd/suite/held_out.py), on studies built
in memory: the borrowed default row is a candidate, a held-out category's own numbers never
choose, the kNN reference stands beside each held-out row, and every number has provenance."""

from __future__ import annotations

import pytest

from dhkd.report.collect import StudyData, Trial
from dhkd.study.design.spec import parse_spec
from dhkd.suite.ablation import build_ablation
from dhkd.suite.held_out import ablation_loo, reference_of, write

CATS = ["a", "b", "c"]
METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")
BASE = {
    "description": "Feature-noise level sigma.",
    "method": "dhkd",
    "preset": "tiny",
    "data": {"synthetic": {"categories": CATS}},
    "seeds": [0],
    "sampler": {"type": "grid"},
    "scheduler": {"type": "none"},
}
SIGMA = {"type": "categorical", "values": [0.5]}
METHOD = {"type": "categorical", "values": ["dhkd", "bikd"]}


def _trial(run_id: str, params: dict, per_category: dict[str, float], image_auroc=None) -> Trial:
    """A COMPLETE trial scoring per_category[c] (%) on every test metric of category c (image
    AUROC image_auroc[c] where given)."""
    metrics, units = {"objective/pixel_aupro": 0.5}, []
    for cat, score in per_category.items():
        got = {m: score / 100 for m in METRICS}
        if image_auroc is not None:
            got["image_auroc"] = image_auroc[cat] / 100
        units.append({"category": cat, "seed": 0, **got})
        for m in METRICS:
            metrics[f"test/{cat}/{m}"] = got[m]
    params = {k: str(v) for k, v in params.items()}
    return Trial(run_id, 0, "COMPLETE", params, metrics, [], units)


def _data(name: str, scientific: dict, trials: list[Trial], reference=None) -> StudyData:
    spec = {"name": name, "scientific": scientific, "objective": {"metric": "pixel_aupro",
            "mode": "max"}, "seeds": [0], "selection": "synthetic"}  # fmt: skip
    return StudyData(name, "sqlite:///unused.db", "1", "study", spec, CATS, trials, [], reference)


def _suite(sigma_scores: dict[str, float], sigma_image=None):
    """An ablation of sigma 0.5 without its default, and a comparison study whose DHKD trial
    (the default row, 80 on every category) it borrows, with a kNN reference at 75."""
    noise_spec = parse_spec({**BASE, "name": "s-noise", "scientific": {"noise.sigma": SIGMA}})
    sigma = _trial("x", {"noise.sigma": 0.5}, sigma_scores, sigma_image)
    noise = _data("s-noise", {"noise.sigma": SIGMA}, [sigma])
    compare_spec = parse_spec({**BASE, "name": "s-compare", "scientific": {"method": METHOD}})
    knn = _trial("knn", {"method": "knn"}, dict.fromkeys(CATS, 75.0))
    compare = _data("s-compare", {"method": METHOD},
                    [_trial("d", {"method": "dhkd"}, dict.fromkeys(CATS, 80.0)),
                     _trial("b", {"method": "bikd"}, dict.fromkeys(CATS, 70.0))], knn)  # fmt: skip
    found = [(noise_spec, noise), (compare_spec, compare)]
    return build_ablation(noise_spec, noise, found), compare


def test_each_held_out_category_is_judged_with_the_row_the_others_chose(tmp_path) -> None:
    # sigma 0.5 wins a and b by 10 points and loses c by 30: c's held-out choice is sigma 0.5
    # (chosen on a, b), a's and b's the default; in sample the default wins (80 vs 76.7)
    ablation, compare = _suite({"a": 90.0, "b": 90.0, "c": 50.0})
    notes: list[str] = []
    held = ablation_loo(ablation, reference_of(compare), notes)
    assert notes == []
    chosen = {h.category: held.labels[h.chosen] for h in held.result.held_out}
    assert chosen == {"a": "σ 0.2 (default)", "b": "σ 0.2 (default)", "c": "σ 0.5"}
    values = {h.category: h.values["pixel_aupro"] for h in held.result.held_out}
    assert values == pytest.approx({"a": 0.80, "b": 0.80, "c": 0.50})
    assert held.result.estimate["pixel_aupro"] == pytest.approx(0.70)
    assert held.result.in_sample == "default" and held.kept_default == 2
    summary = held.summary()
    assert "2 of 3 held-out categories chose the default (σ 0.2); c chose σ 0.5." in summary
    assert "Held-out score 70.0, the in-sample choice's 80.0." in summary
    assert held.baseline.label == "kNN" and held.baseline.values["c"]["pixel_aupro"] == 0.75

    # every held-out number and the kNN's beside it trace to a run
    rows = {(p["row"], p["column"]): p for p in held.provenance}
    assert rows[("c", "pixel_aupro")]["run_id"] == "x"
    assert rows[("a", "pixel_aupro")]["run_id"] == "d"
    assert rows[("a", "pixel_aupro")]["study"] == "s-compare"
    assert rows[("c", "reference pixel_aupro")]["run_id"] == "knn"
    assert {p["table"] for p in held.provenance} == {"loo_s-noise"}

    write(held, tmp_path, "twocolumn")
    markdown = (tmp_path / "loo_s-noise.md").read_text()
    assert "| c | σ 0.5 * | 50.0 | 75.0 | -25.0 |" in markdown
    assert r"\begin{table*}" in (tmp_path / "loo_s-noise.tex").read_text()
    assert (tmp_path / "loo_s-noise.csv").read_text().startswith("held_out,chosen")


def test_a_default_every_held_out_category_keeps() -> None:
    ablation, compare = _suite({"a": 70.0, "b": 79.0, "c": 60.0})
    held = ablation_loo(ablation, reference_of(compare), [])
    assert held.kept_default == 3 and held.result.n_differ == 0
    assert "3 of 3 held-out categories chose the default (σ 0.2)." in held.summary()


def test_the_choice_weighs_all_three_metrics() -> None:
    # sigma 0.5 is a point better on pixel AUROC and AU-PRO everywhere and 10 points worse on
    # image AUROC: the study objective (AU-PRO) alone would pick it for every held-out category
    ablation, compare = _suite(dict.fromkeys(CATS, 81.0), dict.fromkeys(CATS, 71.0))
    held = ablation_loo(ablation, reference_of(compare), [])
    assert held.result.metric == "mean_of_metrics" and held.kept_default == 3
    assert "the mean of image AUROC, pixel AUROC and AU-PRO" in held.summary()


def test_two_categories_give_no_table() -> None:
    ablation, compare = _suite({"a": 70.0, "b": 79.0, "c": 60.0})
    ablation.categories = ["a", "b"]
    assert ablation_loo(ablation, reference_of(compare), []) is None
