"""Validation/test agreement (dhkd.report.agreement): counts, Kendall tau, verdict, the report line.

Studies are built as StudyData/Trial objects directly (no MLflow): one trial per column of a
noise-level ablation, whose metrics are the validation and test values given here."""

from __future__ import annotations

import json

import pytest
from scipy.stats import kendalltau

from dhkd.report.agreement import (
    agreement_line,
    measure,
    pairs,
    study_agreement,
)
from dhkd.report.collect import METRICS, StudyData, Trial
from dhkd.report.select import REFERENCE, columns

SIGMAS = (0.0, 0.1, 0.2, 0.5, 1.0)


def trial(number: int, sigma: float, metrics: dict[str, float]) -> Trial:
    return Trial(f"run{number}", number, "COMPLETE", {"noise.sigma": str(sigma)}, metrics, [])


def study(
    val: dict[str, list[float]],
    test: dict[str, list[float]],
    *,
    protocol: str = "synthetic",
    reference: dict[str, float] | None = None,
) -> StudyData:
    """An ablation with one column (one COMPLETE trial) per value: val[category][i] and
    test[category][i] are column i's numbers of every metric (None: not logged)."""
    cats = list(val)
    n = len(val[cats[0]])
    trials = []
    for i in range(n):
        metrics = {
            f"{split}/{c}/{m}": values[c][i]
            for split, values in (("val", val), ("test", test))
            for c in cats
            for m in METRICS
            if values[c][i] is not None
        }
        logged = [val[c][i] for c in cats if val[c][i] is not None]
        metrics["objective/pixel_aupro"] = sum(logged) / len(logged)  # chooses the column
        trials.append(trial(i, SIGMAS[i], metrics))
    spec = {
        "scientific": {"noise.sigma": {"type": "categorical", "values": list(SIGMAS[:n])}},
        "objective": {"metric": "pixel_aupro", "mode": "max"},
        "selection": protocol,
    }
    ref = trial(-1, -1, reference) if reference is not None else None
    return StudyData("s", "sqlite:///x", "1", "study", spec, cats, trials, reference=ref)


RISING = [0.70, 0.75, 0.80, 0.85]


def test_validation_ranking_opposite_to_test_is_low_with_a_warning():
    data = study({"a": RISING, "b": RISING}, {"a": RISING[::-1], "b": RISING[::-1]})
    result = study_agreement(data, columns(data))
    main = result.metrics["pixel_aupro"]
    assert (main.pairs, main.concordant, main.mean_tau) == (12, 0, pytest.approx(-1.0))
    assert result.verdict == "low"
    line = agreement_line(result)
    assert line.startswith(
        "**Validation/test agreement** (objective AU-PRO, 4 columns × 2 categories): "
        "0 of 12 column pairs ordered alike (0%), Kendall tau -1.00 (mean over categories)."
    )
    assert "Image AUROC: 0 of 12 (0%), tau -1.00; pixel AUROC: 0 of 12 (0%), tau -1.00." in line
    assert "validation ranks the columns differently from the test images" in line
    assert "may not hold on real defects" in line
    assert "`selection: {protocol: test_fold}`" in line


def test_validation_ranking_like_test_is_ok_without_warning():
    data = study({"a": RISING, "b": RISING}, {"a": [v + 0.1 for v in RISING], "b": RISING})
    result = study_agreement(data, columns(data))
    main = result.metrics["pixel_aupro"]
    assert (main.pairs, main.concordant, main.fraction) == (12, 12, 1.0)
    assert main.tau == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    assert result.verdict == "ok"
    line = agreement_line(result)
    assert "12 of 12 column pairs ordered alike (100%), Kendall tau 1.00" in line
    assert "Warning" not in line and "test_fold" not in line


def test_counts_and_tau_of_a_hand_computed_example():
    """Category a swaps columns 1 and 2 on test (5 of 6 pairs alike, tau (5-1)/6), category b
    swaps 0/1 and 2/3 (4 of 6, tau (4-2)/6): 9 of 12, mean tau 0.5."""
    val = {"a": [0.1, 0.2, 0.3, 0.4], "b": [0.1, 0.2, 0.3, 0.4]}
    test = {"a": [0.1, 0.3, 0.2, 0.4], "b": [0.2, 0.1, 0.4, 0.3]}
    data = study(val, test)
    a = measure(data, columns(data), "pixel_aupro")
    assert (a.pairs, a.concordant, a.fraction) == (12, 9, 0.75)
    assert a.tau == {"a": pytest.approx(4 / 6), "b": pytest.approx(2 / 6)}
    assert a.tau["b"] == pytest.approx(kendalltau(val["b"], test["b"]).statistic)
    assert a.mean_tau == pytest.approx(0.5) and (a.columns, a.categories) == (4, 2)
    result = study_agreement(data, columns(data))
    assert result.verdict == "ok"  # 75% >= 70% and tau 0.50 >= 0.40
    assert (
        "(objective AU-PRO, 4 columns × 2 categories): 9 of 12 column pairs ordered alike "
        "(75%), Kendall tau 0.50 (mean over categories)." in agreement_line(result)
    )
    as_json = json.loads(json.dumps(result.to_json()))  # report.json's "agreement"
    assert as_json["verdict"] == "ok" and as_json["objective"] == "pixel_aupro"
    assert as_json["metrics"]["pixel_aupro"]["fraction"] == 0.75
    assert as_json["metrics"]["pixel_aupro"]["concordant"] == 9


def test_ties_are_left_out_and_tau_needs_three_columns_for_the_mean():
    # a: columns 0 and 1 tie on validation -> 2 of 3 pairs count; b: two columns only
    val = {"a": [0.5, 0.5, 0.6], "b": [0.1, 0.2, None]}
    data = study(val, {"a": [0.3, 0.4, 0.2], "b": [0.1, 0.3, None]})
    cols = columns(data)
    assert pairs(data, cols, "pixel_aupro")["b"] == {
        "noise.sigma=0.0": (0.1, 0.1),
        "noise.sigma=0.1": (0.2, 0.3),
    }
    a = measure(data, cols, "pixel_aupro")
    assert (a.pairs, a.concordant) == (3, 1)  # a: (0,2), (1,2) both discordant; b: alike
    assert a.tau["b"] == pytest.approx(1.0)  # measured, not in the mean (2 columns)
    assert a.mean_tau == pytest.approx(a.tau["a"]) and a.tau["a"] < 0
    assert study_agreement(data, cols).verdict == "low"


def test_too_few_pairs_says_so():
    data = study({"a": [0.7, 0.8], "b": [0.7, 0.8]}, {"a": [0.8, 0.7], "b": [0.7, 0.8]})
    result = study_agreement(data, columns(data))
    assert result.metrics["pixel_aupro"].pairs == 2 and result.verdict == "too few"
    line = agreement_line(result)
    assert "(objective AU-PRO, 2 columns × 2 categories): too few column pairs" in line
    assert "2 comparable, at least 3 needed" in line and "Warning" not in line
    assert "no Kendall tau" not in line  # the objective's numbers are not given at all


def test_a_search_has_one_column_and_no_pair():
    data = study({"a": [0.8]}, {"a": [0.7]})
    data.spec["scientific"] = {}
    result = study_agreement(data, columns(data))
    assert result.verdict == "too few" and result.metrics["pixel_aupro"].pairs == 0
    assert "Image AUROC: no comparable column pairs" in agreement_line(result)


def test_the_reference_column_counts_when_it_has_validation_metrics():
    val, test = {"a": [0.7, 0.8]}, {"a": [0.7, 0.8]}
    ref = {f"{s}/a/{m}": 0.9 for s in ("val", "test") for m in METRICS}
    data = study(val, test, reference=ref)
    assert columns(data)[-1].key == REFERENCE
    assert measure(data, columns(data), "pixel_aupro").pairs == 3
    no_val = study(val, test, reference={k: v for k, v in ref.items() if k.startswith("test/")})
    assert measure(no_val, columns(no_val), "pixel_aupro").pairs == 1


def test_a_single_category_study_may_log_keys_without_the_category():
    trials = []
    for i, sigma in enumerate(SIGMAS[:3]):  # val/<metric>, test/<metric> only
        metrics = {f"{split}/{m}": v + 0.01 * i for split, v in (("val", 0.5), ("test", 0.6))
                   for m in METRICS}  # fmt: skip
        metrics["objective/pixel_aupro"] = metrics["val/pixel_aupro"]
        trials.append(trial(i, sigma, metrics))
    spec = {"scientific": {"noise.sigma": {"type": "categorical", "values": list(SIGMAS[:3])}}}
    data = StudyData("s", "sqlite:///x", "1", "study", spec, ["bottle"], trials)
    a = measure(data, columns(data), "pixel_aupro")
    assert (a.pairs, a.concordant, a.categories) == (3, 3, 1)
    # with several categories the whole-run keys are means, never one category's numbers
    data.categories = ["bottle", "cable"]
    assert measure(data, columns(data), "pixel_aupro").pairs == 0


def test_protocol_test_is_called_trivial_and_test_fold_has_its_own_warning():
    val, test = {"a": RISING}, {"a": RISING}
    line = agreement_line(study_agreement(*_with_cols(study(val, test, protocol="test"))))
    assert "trivially perfect" in line and "optimistic" in line
    fold = study({"a": RISING}, {"a": RISING[::-1]}, protocol="test_fold")
    line = agreement_line(study_agreement(*_with_cols(fold)))
    assert "the validation fold ranks the columns differently" in line
    assert "`selection.val_fraction`" in line and "test_fold}`" not in line


def _with_cols(data: StudyData):
    return data, columns(data)


@pytest.mark.slow
def test_the_report_writes_the_line_and_the_numbers(fake_study, tmp_path):
    """The hooks: README.md holds the line beside the tables, report.json the numbers. The
    hand-made study's validation is its test minus a constant, so the two always agree."""
    from dhkd.report import build_report

    uri, name, _ = fake_study
    out = tmp_path / "out"
    build_report(name, uri, out, log_artifacts=False)
    readme = (out / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("**Validation/test agreement**"))
    assert readme.index("## Tables") < readme.index(line) < readme.index("### ")
    # σ 0.0 and σ 0.2 have a COMPLETE trial (σ 0.5 none): one pair in each of 4 categories
    assert "(objective AU-PRO, 2 columns × 4 categories): 4 of 4 column pairs" in line
    assert "Warning" not in line
    agreement = json.loads((out / "report.json").read_text())["agreement"]
    assert agreement["verdict"] == "ok" and agreement["protocol"] == "synthetic"
    assert agreement["metrics"]["image_auroc"]["pairs"] == 4
    assert "Validation/test agreement" in (out / "README.html").read_text()
