"""Leave-one-category-out selection: the pure function, its tables, and the study report's hook."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest

from dhkd.errors import DhkdError
from dhkd.report import latex_check
from dhkd.report.build import write_tables
from dhkd.report.collect import METRICS, StudyData, Trial
from dhkd.report.latex import LAYOUTS, PREAMBLE
from dhkd.report.loo import (
    ESTIMATE,
    IN_SAMPLE,
    Baseline,
    leave_one_out,
    to_csv,
    to_latex,
    to_markdown,
)
from dhkd.report.loo_study import (
    FILE,
    TEST_IMAGES,
    readme_lines,
    study_leave_one_out,
)
from dhkd.report.select import REFERENCE, columns
from dhkd.report.tables import build_table


def per_category(**numbers: float) -> dict[str, dict[str, float]]:
    return {cat: {"pixel_aupro": v} for cat, v in numbers.items()}


# A wins in-sample by its margin on `a` alone; without `a`, B is better.
SPIKY = {
    "A": per_category(a=0.99, b=0.70, c=0.70, d=0.70),
    "B": per_category(a=0.75, b=0.75, c=0.75, d=0.75),
}


def test_a_column_that_wins_in_sample_loses_when_its_best_category_is_held_out():
    result = leave_one_out(SPIKY, "pixel_aupro")
    assert result.in_sample == "A"
    assert result.in_sample_values["pixel_aupro"] == pytest.approx(0.7725)
    chosen = {h.category: (h.chosen, h.values["pixel_aupro"], h.differs) for h in result.held_out}
    assert chosen == {
        "a": ("B", 0.75, True),
        "b": ("A", 0.70, False),
        "c": ("A", 0.70, False),
        "d": ("A", 0.70, False),
    }
    assert result.n_differ == 1
    assert result.estimate["pixel_aupro"] == pytest.approx((0.75 + 3 * 0.70) / 4)
    assert result.counts == {"pixel_aupro": 4}


def test_min_mode_chooses_the_lowest_mean():
    result = leave_one_out(SPIKY, "pixel_aupro", mode="min")
    assert result.in_sample == "B"
    # without a, A (0.70) is lower than B; with a, A's 0.99 lifts its mean above B's 0.75
    assert [h.chosen for h in result.held_out] == ["A", "B", "B", "B"]
    assert result.n_differ == 1


def test_ties_go_to_the_first_column_in_the_given_order():
    # equal means from the same numbers summed in another order
    a = per_category(a=0.1, b=0.2, c=0.7)
    b = per_category(a=0.7, b=0.1, c=0.2)
    assert leave_one_out({"A": a, "B": dict(a)}, "pixel_aupro").in_sample == "A"
    assert leave_one_out({"B": dict(a), "A": a}, "pixel_aupro").in_sample == "B"
    result = leave_one_out({"B": b, "A": a}, "pixel_aupro")
    assert result.in_sample == "B" and result.n_differ == 1  # a tie over a, b, c: the first
    held = {h.category: h.chosen for h in result.held_out}
    # without a: A 0.45 vs B 0.15; without b: B 0.45 vs A 0.4; without c: A 0.15 vs B 0.4
    assert held == {"a": "A", "b": "B", "c": "B"}


def test_missing_values_leave_a_column_out_only_where_a_mean_needs_them():
    values = {
        "A": {**per_category(a=0.9, c=0.9, d=0.9), "b": {"image_auroc": 0.5}},  # no AU-PRO on b
        "B": per_category(a=0.8, b=0.8, c=0.8, d=0.8),
    }
    for cat in "abcd":
        values["B"][cat]["image_auroc"] = 0.6
    result = leave_one_out(values, "pixel_aupro")
    assert result.in_sample == "B"  # A lacks b: no mean over every category
    held = {h.category: h for h in result.held_out}
    assert held["b"].chosen == "A" and held["b"].values == {"image_auroc": 0.5}
    assert held["b"].differs
    assert [held[c].chosen for c in "acd"] == ["B", "B", "B"]
    assert "pixel_aupro" not in result.estimate and result.counts["pixel_aupro"] == 3
    assert result.estimate["image_auroc"] == pytest.approx((0.5 + 3 * 0.6) / 4)
    assert "AU-PRO@0.3 has 3 of 4" in to_markdown(result)


def test_a_held_out_category_where_no_column_has_every_other_category():
    values = {
        "A": per_category(a=0.9, b=0.9, c=0.9),
        "B": per_category(a=0.8, b=0.8, d=0.8),
    }
    result = leave_one_out(values, "pixel_aupro")
    assert result.categories == ["a", "b", "c", "d"]
    assert result.in_sample is None and result.in_sample_values == {}
    held = {h.category: h.chosen for h in result.held_out}
    assert held == {"a": None, "b": None, "c": "B", "d": "A"}
    assert "no column has every other category" in to_markdown(result)


def test_too_few_categories_or_columns_is_a_clear_error():
    with pytest.raises(DhkdError, match=r"3 categories with pixel_aupro .*; got 2 \(a, b\): add"):
        leave_one_out({"A": per_category(a=0.9, b=0.8), "B": per_category(a=0.7, b=0.6)},
                      "pixel_aupro")  # fmt: skip
    only = {"A": per_category(a=0.9, b=0.8, c=0.7), "B": {"a": {"image_auroc": 0.5}}}
    with pytest.raises(DhkdError, match=r"2 columns with pixel_aupro .* got 1 \(A\); without"):
        leave_one_out(only, "pixel_aupro")
    with pytest.raises(DhkdError, match=r"categories with image_aupro .*; got 0 \(none\)"):
        leave_one_out(SPIKY, "image_aupro")
    with pytest.raises(DhkdError, match="'best' is not one of max, min"):
        leave_one_out(SPIKY, "pixel_aupro", mode="best")


def full_values() -> dict:
    """A and B on four categories, every metric; SPIKY's AU-PRO."""
    values = {col: {cat: dict(m) for cat, m in cats.items()} for col, cats in SPIKY.items()}
    for col, level in (("A", 0.90), ("B", 0.80)):
        for i, cat in enumerate("abcd"):
            values[col][cat].update(image_auroc=level + 0.01 * i, pixel_auroc=level + 0.05)
    return values


REF = Baseline(
    "reference", "kNN (reference)", {c: {m: 0.72 for m in METRICS} for c in "abcd"}
)  # fmt: skip


def test_markdown_shows_choices_numbers_and_the_baseline_difference():
    result = leave_one_out(full_values(), "pixel_aupro")
    md = to_markdown(result, {"A": "σ 0.0", "B": "σ 0.2"}, REF)
    lines = md.splitlines()
    assert lines[0] == "### Leave-one-category-out"
    assert lines[2].startswith(
        "| Held-out category | Chosen on the other categories | Image AUROC |"
    )
    assert "AU-PRO@0.3, kNN (reference) | Δ |" in lines[2]
    # held-out a chose B (marked: differs from the in-sample A); image 0.80, AU-PRO 0.75
    assert (
        "| a | σ 0.2 * | 80.0 | 72.0 | +8.0 | 85.0 | 72.0 | +13.0 | 75.0 | 72.0 | +3.0 |" in lines
    )
    assert "| b | σ 0.0 | 91.0 | 72.0 | +19.0 |" in md
    estimate = next(line for line in lines if line.startswith(f"| **{ESTIMATE}**"))
    assert estimate.endswith("| 71.2 | 72.0 | -0.8 |")  # (75 + 3 x 70) / 4 = 71.25
    in_sample = next(line for line in lines if line.startswith(f"| **{IN_SAMPLE}**"))
    assert in_sample.startswith(f"| **{IN_SAMPLE}** | σ 0.0 | 91.5 |")  # A's mean over a..d
    assert "1 of 4 held-out categories chose another column" in md
    assert "(σ 0.0)" in md and "over the other 3 categories" in md
    plain = to_markdown(result)
    assert "kNN" not in plain and "| a | B * | 80.0 | 85.0 | 75.0 |" in plain


def test_threshold_measures_are_titled_as_columns_and_as_the_criterion():
    values = {
        col: {cat: {"threshold_ba_ratio": v, "threshold_fpr": 1 - v} for cat, v in cats.items()}
        for col, cats in {"A": {"a": 0.9, "b": 0.8, "c": 0.7}, "B": {"a": 0.6, "b": 0.9}}.items()
    }
    result = leave_one_out(values, "threshold_ba_ratio")
    md = to_markdown(result, metrics=("threshold_ba_ratio", "threshold_fpr"))
    head = "| Held-out category | Chosen on the other categories | Threshold BA ratio |"
    assert head + " Threshold false-alarm rate |" in md
    assert "| a | A | 90.0 | 10.0 |" in md and "| c | A | 70.0 | 30.0 |" in md
    assert "the highest mean Threshold BA ratio over the other 2 categories" in md


def test_csv_has_one_decimal_percent_and_the_choice_per_row():
    result = leave_one_out(full_values(), "pixel_aupro")
    rows = list(csv.DictReader(io.StringIO(to_csv(result, {"A": "σ 0.0"}, REF))))
    assert [r["held_out"] for r in rows] == ["a", "b", "c", "d", ESTIMATE, IN_SAMPLE]
    a = rows[0]
    assert (a["chosen"], a["chosen_label"], a["differs_from_in_sample"]) == ("B", "B", "true")
    assert (a["pixel_aupro"], a["reference pixel_aupro"], a["delta pixel_aupro"]) == (
        "75.0",
        "72.0",
        "3.0",
    )
    assert rows[1]["chosen_label"] == "σ 0.0" and rows[1]["differs_from_in_sample"] == "false"
    assert rows[4]["pixel_aupro"] == "71.2" and rows[4]["differs_from_in_sample"] == ""
    assert rows[5]["chosen"] == "A" and rows[5]["image_auroc"] == "91.5"


def test_latex_is_booktabs_escaped_and_wide_only_with_a_baseline():
    result = leave_one_out(full_values(), "pixel_aupro")
    tex = to_latex(result, {"A": "σ 0.0"}, REF, study="my_study", note="On test images.")
    assert tex.startswith("\\begin{table*}[t]") and tex.rstrip().endswith("\\end{table*}")
    for part in (
        r"\toprule",
        r"\bottomrule",
        r"\multicolumn{3}{c}{AU-PRO@0.3}",
        r"\cmidrule(lr){9-11}",
        r"\texttt{my\_study}",
        r"\label{tab:my-study-leave-one-out}",
        r"b & $\sigma$ 0.0 & 91.0 & 72.0 & $+19.0$",
        r"in \%",
        "On test images.}",
    ):
        assert part in tex, part
    assert tex.count(r"\midrule") == 2  # under the header, above the estimate
    plain = to_latex(result, study="s", layout="onecolumn")
    assert plain.startswith("\\begin{table}[t]") and "multicolumn" not in plain
    with pytest.raises(DhkdError, match="unknown LaTeX layout"):
        to_latex(result, study="s", layout="wide")


@pytest.mark.latex
@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not found")
@pytest.mark.parametrize("layout", LAYOUTS)
def test_latex_of_fifteen_categories_compiles_with_the_tables_preamble(tmp_path, layout):
    cats = [f"category_{i}" for i in range(15)]
    labels = ["σ 0.5, variant spatial", "σ 1.0, variant dual"]
    values = {
        key: {c: {m: 0.9 + 0.01 * ((i + j) % 3) for m in METRICS} for j, c in enumerate(cats)}
        for i, key in enumerate(labels)
    }
    ref = Baseline("reference", "knn (reference)", {c: {m: 0.9 for m in METRICS} for c in cats})
    result = leave_one_out(values, "pixel_aupro")
    (tmp_path / "preamble.tex").write_text(PREAMBLE)
    tex = to_latex(result, None, ref, study="noise_level", layout=layout, note=TEST_IMAGES)
    (tmp_path / f"{FILE}.tex").write_text(tex)
    results = latex_check.check(tmp_path)
    assert len(results) == 2 and all(r.ok for r in results), [r.text() for r in results]


# --- the study report's hook, on StudyData built without MLflow --------------------------------

CATEGORIES = ["a", "b", "c", "d"]


def trial(number: int, sigma: float, aupro: dict[str, float], objective: float) -> Trial:
    metrics = {"objective/pixel_aupro": objective}
    for i, cat in enumerate(CATEGORIES):
        metrics[f"test/{cat}/pixel_aupro"] = aupro[cat]
        metrics[f"test/{cat}/image_auroc"] = 0.9 + 0.01 * i
        metrics[f"test/{cat}/pixel_auroc"] = 0.95
        metrics[f"val/{cat}/pixel_aupro"] = objective
    for m in METRICS:
        metrics[f"test/{m}"] = sum(metrics[f"test/{c}/{m}"] for c in CATEGORIES) / 4
        metrics[f"val/{m}"] = objective
    tags = {"dhkd.fp.code_commit": "abc123", "dhkd.seeds": "0"}
    params = {"noise.sigma": str(sigma), "method": "dhkd"}
    return Trial(f"run{number}", number, "COMPLETE", params, metrics, [], units=[], tags=tags)


def study(trials: list[Trial], categories=CATEGORIES, reference: Trial | None = None):
    spec = {
        "scientific": {"noise.sigma": {"type": "categorical", "values": [0.0, 0.2, 0.5]}},
        "nuisance": {},
        "objective": {"metric": "pixel_aupro", "mode": "max"},
        "seeds": [0],
        "selection": "test_fold",
    }
    return StudyData("loo_study", "sqlite:///x.db", "1", "studyrun", spec, list(categories),
                     trials, reference=reference)  # fmt: skip


def ablation(reference: bool = True) -> StudyData:
    """σ 0.0 wins in-sample by its margin on a; σ 0.5 has no COMPLETE trial; a kNN reference."""
    trials = [
        trial(0, 0.0, dict(a=0.99, b=0.70, c=0.70, d=0.70), objective=0.80),
        trial(1, 0.2, dict(a=0.75, b=0.75, c=0.75, d=0.75), objective=0.78),
        trial(2, 0.2, dict(a=0.60, b=0.60, c=0.60, d=0.60), objective=0.70),  # not its column's
    ]
    ref = trial(-1, 0.0, dict(a=0.72, b=0.71, c=0.73, d=0.74), objective=0.7)
    ref.params = {"method": "knn"}
    return study(trials, reference=ref if reference else None)


def test_the_study_hook_chooses_among_the_columns_trials_with_the_reference_as_baseline():
    data = ablation()
    cols = columns(data)
    assert [c.key for c in cols][-1] == REFERENCE
    notes: list[str] = []
    loo = study_leave_one_out(data, cols, notes)
    assert loo is not None and not notes
    result = loo.result
    assert result.columns == ["noise.sigma=0.0", "noise.sigma=0.2"]  # no reference, no σ 0.5
    assert result.in_sample == "noise.sigma=0.0"
    assert [h.chosen for h in result.held_out] == ["noise.sigma=0.2", *["noise.sigma=0.0"] * 3]
    assert result.held_out[0].values["pixel_aupro"] == 0.75  # trial #1's, not #2's
    assert loo.baseline.key == REFERENCE and loo.baseline.label == "knn (reference)"
    assert loo.baseline.values["c"]["pixel_aupro"] == 0.73
    assert loo.labels["noise.sigma=0.2"] == "σ 0.2"
    prov = {(p["row"], p["column"]): p for p in loo.provenance}
    assert len(prov) == len(loo.provenance) == 4 * 3 * 2  # held-out x metric x (chosen, ref)
    a = prov[("a", "pixel_aupro")]
    assert (a["run_id"], a["trial_number"], a["metric_key"]) == ("run1", 1, "test/a/pixel_aupro")
    assert a["value"] == pytest.approx(75.0) and a["mlflow_value"] == 0.75
    assert a["label"] == "σ 0.2" and a["code_commit"] == "abc123" and a["table"] == FILE
    ref = prov[("d", f"{REFERENCE} pixel_aupro")]
    assert (ref["run_id"], ref["metric_key"], ref["value"]) == ("run-1", "test/d/pixel_aupro", 74.0)
    saved = json.loads(json.dumps(loo.to_json()))
    assert saved["in_sample"] == "noise.sigma=0.0" and saved["n_differ"] == 1
    assert saved["held_out"][0]["chosen"] == "noise.sigma=0.2"
    assert saved["baseline"]["values"]["a"]["pixel_aupro"] == 0.72


def test_the_study_hook_writes_its_files_provenance_and_readme_section(tmp_path):
    data = ablation()
    cols = columns(data)
    loo = study_leave_one_out(data, cols, [])
    tables = {m: build_table(data, cols, m) for m in METRICS}
    write_tables(tables, tmp_path, "twocolumn", loo)
    folder = tmp_path / "tables"
    md = (folder / f"{FILE}.md").read_text()
    assert md.startswith("### Leave-one-category-out — study `loo_study`")
    assert "| a | σ 0.2 * |" in md and TEST_IMAGES in md
    tex = (folder / f"{FILE}.tex").read_text()
    assert "\\begin{table*}" in tex and "knn (reference)" in tex and "TEST numbers" in tex
    assert (folder / f"{FILE}.csv").read_text().startswith("held_out,chosen,")
    with open(tmp_path / "provenance.csv") as f:
        prov = [r for r in csv.DictReader(f) if r["table"] == FILE]
    assert len(prov) == 24 and {r["source"] for r in prov} == {"mlflow metric (x100)"}
    text = "\n".join(readme_lines(loo, data.protocol))
    assert text.startswith("## Leave-one-category-out")
    assert "never chose anything" in text and "validation fold of the test set" in text
    assert "In-sample choice: σ 0.0; 1 of 4 held-out categories chose another column." in text
    assert "LOO estimate 71.2, in-sample choice's mean 77.2" in text
    assert f"[CSV](tables/{FILE}.csv)" in text


def test_the_section_needs_three_categories_and_two_complete_columns():
    data = ablation(reference=False)
    loo = study_leave_one_out(data, columns(data), [])
    assert loo is not None and loo.baseline is None
    small = study(data.trials, categories=["a", "b"])
    assert study_leave_one_out(small, columns(small), []) is None
    one = study([data.trials[0]], reference=data.reference)
    assert study_leave_one_out(one, columns(one), []) is None  # σ 0.0 and the reference only


def test_trials_without_test_metrics_skip_the_section_with_a_note():
    data = ablation()
    for t in data.trials:
        t.metrics = {k: v for k, v in t.metrics.items() if "pixel_aupro" not in k or "val" in k}
        t.metrics["objective/pixel_aupro"] = 0.8 - 0.01 * t.number
    notes: list[str] = []
    assert study_leave_one_out(data, columns(data), notes) is None
    assert len(notes) == 1 and notes[0].startswith("Leave-one-category-out skipped (test/")
    assert (
        "at least 3 categories with pixel_aupro (one held out, two to choose on); got 0" in notes[0]
    )
