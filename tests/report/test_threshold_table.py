"""The stored threshold on the test images (dhkd.report.threshold_table): numbers, worst category,
runs that predate the measures, provenance, files and the report's README section.

Studies are built as StudyData/Trial objects directly (no MLflow), except the last test, which
adds the measures to a copy of the hand-made MLflow study and runs the whole report."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from dhkd.report.build import write_tables
from dhkd.report.collect import METRICS, StudyData, Trial
from dhkd.report.select import REFERENCE, columns
from dhkd.report.tables import build_table
from dhkd.report.threshold_table import (
    FILE,
    PREDATES,
    readme_lines,
    rule,
    study_threshold,
)

CATEGORIES = ("a", "b", "c")
BETWEEN = {"threshold.mode": "between", "threshold.fraction": "0.4", "threshold.sigmas": "3.0"}


def measures(precision: float, recall: float, fpr: float, ratio: float) -> dict[str, float]:
    return {
        "threshold_precision": precision,
        "threshold_recall": recall,
        "threshold_fpr": fpr,
        "threshold_ba_ratio": ratio,
    }


def trial(
    number: int,
    sigma: float,
    per_category: dict[str, dict[str, float]],
    objective: float,
    params: dict[str, str] | None = None,
) -> Trial:
    metrics = {f"test/{c}/{m}": v for c, values in per_category.items() for m, v in values.items()}
    metrics |= {f"test/{c}/{m}": 0.8 for c in CATEGORIES for m in METRICS}
    metrics["objective/pixel_aupro"] = objective
    params = {"noise.sigma": str(sigma), "method": "dhkd", **(params or BETWEEN)}
    tags = {"dhkd.fp.code_commit": "abc123"}
    return Trial(f"run{number}", number, "COMPLETE", params, metrics, [], units=[], tags=tags)


def study(trials: list[Trial], reference: Trial | None = None) -> StudyData:
    spec = {
        "scientific": {"noise.sigma": {"type": "categorical", "values": [0.0, 0.2, 0.5]}},
        "objective": {"metric": "pixel_aupro", "mode": "max"},
    }
    return StudyData(
        "thr",
        "sqlite:///x.db",
        "1",
        "studyrun",
        spec,
        list(CATEGORIES),
        trials,
        reference=reference,
    )


def ablation(reference: Trial | None = None) -> StudyData:
    """σ 0.0: trial #0 (between at 0.4), its worst BA ratio on b; σ 0.2: trial #1 (fpr), whose
    c logged no measures, beside a worse trial #2 that is not its column's; σ 0.5: no trial."""
    zero = {
        "a": measures(0.9, 0.8, 0.1, 0.95),
        "b": measures(0.6, 0.5, 0.3, 0.70),
        "c": measures(0.9, 0.9, 0.2, 1.0),
    }
    two = {"a": measures(1.0, 0.4, 0.0, 0.80), "b": measures(0.8, 0.6, 0.2, 0.90)}
    fpr = {"threshold.mode": "fpr", "threshold.target_fpr": "0.05"}
    trials = [trial(0, 0.0, zero, 0.8), trial(1, 0.2, two, 0.9, fpr), trial(2, 0.2, zero, 0.7)]
    return study(trials, reference)


def knn(per_category: dict[str, dict[str, float]]) -> Trial:
    ref = trial(-1, 0.0, per_category, 0.5, {"threshold.mode": "f1_max"})
    ref.params["method"] = "knn"
    return ref


def test_means_over_categories_worst_category_and_rule_per_column():
    data = ablation()
    result = study_threshold(data, columns(data))
    assert [c.key for c in result.columns] == ["noise.sigma=0.0", "noise.sigma=0.2"]
    zero, two = result.columns
    assert (zero.run_id, zero.trial_number, zero.rule) == ("run0", 0, "between, fraction 0.4")
    assert zero.mean["threshold_precision"] == pytest.approx(0.8)
    assert zero.mean["threshold_recall"] == pytest.approx(2.2 / 3)
    assert zero.mean["threshold_fpr"] == pytest.approx(0.2)
    assert zero.mean["threshold_ba_ratio"] == pytest.approx(2.65 / 3)
    assert zero.worst == "b" and zero.missing == []
    assert (two.trial_number, two.rule) == (1, "fpr, target_fpr 0.05")  # #1, not the worse #2
    assert two.mean["threshold_ba_ratio"] == pytest.approx(0.85)  # over a and b: c has none
    assert two.worst == "a" and two.missing == ["c"]


def test_readme_section_shows_percent_rule_worst_category_and_explains_ba_ratio():
    data = ablation()
    text = "\n".join(readme_lines(study_threshold(data, columns(data))))
    assert text.startswith("## Stored threshold on the test images\n")
    assert "| Column | Rule | Precision | Recall | False-alarm rate | BA ratio |" in text
    assert "| σ 0.0 (#0) | between, fraction 0.4 | 80.0 | 73.3 | 20.0 | 88.3 | 70.0 (b) |" in text
    assert "| σ 0.2 (#1) | fpr, target_fpr 0.05 | 90.0 | 50.0 | 10.0 | 85.0 | 80.0 (a) |" in text
    assert "σ 0.5" not in text  # no trial, no row
    assert "- σ 0.2 (#1): not every measure logged for c;" in text
    assert "over the best balanced accuracy any threshold reaches on the same test images" in text
    assert "`threshold.mode`" in text and PREDATES not in text
    assert f"[CSV](tables/{FILE}.csv)" in text


def test_runs_that_predate_the_measures_give_one_line_and_no_numbers():
    data = study([trial(0, 0.0, {}, 0.8, {}), trial(1, 0.2, {}, 0.9, {})], knn({}))
    assert study_threshold(data, columns(data)) is None
    assert readme_lines(None) == ["## Stored threshold on the test images", "", PREDATES, ""]
    assert rule({}) == "not logged"


def test_the_reference_is_a_row_only_when_its_run_has_the_measures():
    ref = knn({c: measures(0.7, 0.7, 0.3, 0.9) for c in CATEGORIES})
    data = ablation(reference=ref)
    rows = study_threshold(data, columns(data)).columns
    assert rows[-1].key == REFERENCE and rows[-1].header == "knn (reference)"
    assert rows[-1].rule == "f1_max" and rows[-1].mean["threshold_ba_ratio"] == pytest.approx(0.9)
    silent = ablation(reference=knn({}))
    assert [c.key for c in study_threshold(silent, columns(silent)).columns] == [
        "noise.sigma=0.0",
        "noise.sigma=0.2",
    ]


def test_an_older_trial_among_newer_ones_is_a_row_of_dashes_with_a_note():
    data = ablation()
    data.trials[0].metrics = {
        k: v for k, v in data.trials[0].metrics.items() if "threshold_" not in k
    }
    result = study_threshold(data, columns(data))
    assert not result.columns[0].measured
    text = "\n".join(readme_lines(result))
    assert "| σ 0.0 (#0) | between, fraction 0.4 | – | – | – | – | – |" in text
    assert "- σ 0.0 (#0): its run predates these measures." in text


def test_files_and_provenance_rows_name_the_run_and_metric_of_every_number(tmp_path):
    data = ablation()
    cols = columns(data)
    result = study_threshold(data, cols)
    tables = {m: build_table(data, cols, m) for m in METRICS}
    write_tables(tables, tmp_path, "twocolumn", None, result)
    folder = tmp_path / "tables"
    assert (
        (folder / f"{FILE}.md")
        .read_text()
        .startswith("### Stored threshold on the test images — study `thr`")
    )
    with open(folder / f"{FILE}.csv") as f:
        lines = {(r["column"], r["category"]): r for r in csv.DictReader(f)}
    assert len(lines) == 2 * (len(CATEGORIES) + 1)
    mean = lines[("noise.sigma=0.0", "Mean")]
    assert (mean["ba_ratio"], mean["false_alarm_rate"], mean["rule"]) == (
        "88.3",
        "20.0",
        "between, fraction 0.4",
    )
    assert lines[("noise.sigma=0.2", "c")]["ba_ratio"] == ""
    with open(tmp_path / "provenance.csv") as f:
        prov = [r for r in csv.DictReader(f) if r["table"] == FILE]
    logged = [r for r in prov if r["source"] == "mlflow metric (x100)"]
    assert len(logged) == 3 * 4 + 2 * 4  # σ 0.0: 3 categories, σ 0.2: 2, 4 measures each
    b = next(r for r in logged if r["row"] == "b" and r["column"] == "noise.sigma=0.0 ba_ratio")
    assert (b["run_id"], b["trial_number"], b["metric_key"]) == (
        "run0",
        "0",
        "test/b/threshold_ba_ratio",
    )
    assert float(b["value"]) == pytest.approx(70.0) and float(b["mlflow_value"]) == 0.7
    assert b["code_commit"] == "abc123" and b["label"] == "σ 0.0"
    means = [r for r in prov if r["row"] == "Mean"]
    assert len(means) == 2 * 4 and {r["source"] for r in means} == {"computed (x100)"}
    two = next(r for r in means if r["column"] == "noise.sigma=0.2 ba_ratio")
    assert two["run_id"] == "run1" and float(two["value"]) == pytest.approx(85.0)
    assert two["reference"] == "mean of test/<category>/threshold_ba_ratio over a, b"
    saved = json.loads(json.dumps(result.to_json()))["columns"]
    assert saved["noise.sigma=0.0"]["worst"] == "b"
    assert saved["noise.sigma=0.2"]["values"]["a"]["threshold_recall"] == 0.4


@pytest.mark.slow
def test_the_report_writes_the_section_files_and_numbers(fake_study, tmp_path):
    """The hooks, on a copy of the hand-made study: without the measures the README says its runs
    predate them; with them logged to every COMPLETE trial, the section holds their table."""
    from mlflow.tracking import MlflowClient

    from dhkd.report import build_report

    uri, name, _ = fake_study
    db = tmp_path / "mlflow.db"
    shutil.copy(uri.removeprefix("sqlite:///"), db)
    copy = f"sqlite:///{db}"
    old = tmp_path / "old"
    build_report(name, copy, old, log_artifacts=False)
    readme = (old / "README.md").read_text()
    assert f"## Stored threshold on the test images\n\n{PREDATES}\n" in readme
    assert json.loads((old / "report.json").read_text())["threshold"] is None
    assert not (old / "tables" / f"{FILE}.csv").exists()

    client = MlflowClient(copy)
    experiment = client.get_experiment_by_name(name)
    for run in client.search_runs([experiment.experiment_id], "tags.state = 'COMPLETE'"):
        for i, cat in enumerate(("a", "b", "c", "d")):
            for m, v in measures(0.9, 0.8, 0.1, 0.9 - 0.1 * (i == 2)).items():
                client.log_metric(run.info.run_id, f"test/{cat}/{m}", v)
    new = tmp_path / "new"
    build_report(name, copy, new, log_artifacts=False)
    readme = (new / "README.md").read_text()
    section = readme.index("## Stored threshold on the test images")
    assert readme.index("**Validation/test agreement**") < section < readme.index("## Figures")
    # σ 0.0's column is trial #0, σ 0.2's #1; the hand-made trials use the default rule
    assert "| σ 0.0 (#0) | between, fraction 0.4 | 90.0 | 80.0 | 10.0 | 87.5 | 80.0 (c) |" in readme
    assert "| σ 0.2 (#1) | between, fraction 0.4 |" in readme
    meta = json.loads((new / "report.json").read_text())
    saved = meta["threshold"]["columns"]
    assert set(saved) == {"noise.sigma=0.0", "noise.sigma=0.2"}
    assert saved["noise.sigma=0.2"]["run_id"] == meta["columns"]["noise.sigma=0.2"]
    with open(new / "provenance.csv") as f:
        prov = [r for r in csv.DictReader(f) if r["table"] == FILE]
    assert len(prov) == 2 * (4 * 4 + 4)
    assert (new / "tables" / f"{FILE}.md").is_file()
    assert "Stored threshold on the test images" in (new / "README.html").read_text()
