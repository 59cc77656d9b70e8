"""Tables: values, seed spread, bold, partial marking, rendering, and provenance."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from dhkd.report.collect import load_study
from dhkd.report.latex import to_latex
from dhkd.report.render import provenance_rows, to_csv, to_markdown
from dhkd.report.select import columns
from dhkd.report.tables import AVERAGE, build_table

from .report_helpers import FakeTrial, write_study


@pytest.fixture(scope="module")
def pixel_table(fake_study):
    uri, name, _ = fake_study
    data = load_study(name, uri)
    return build_table(data, columns(data), "pixel_auroc", paper=True)


def test_cells_are_the_final_mlflow_metrics_with_seed_spread(pixel_table, fake_study):
    _, _, trials = fake_study
    cell = pixel_table.cells[("c", "noise.sigma=0.2")]
    seeds = [u["pixel_auroc"] for u in trials[1].units if u["category"] == "c"]
    assert cell.value == pytest.approx(100 * np.mean(seeds))
    assert cell.std == pytest.approx(100 * np.std(seeds, ddof=1))
    assert (cell.n, cell.metric_key, cell.source) == (2, "test/c/pixel_auroc", "mlflow")
    avg = pixel_table.cells[(AVERAGE, "noise.sigma=0.0")]
    assert avg.metric_key == "test/pixel_auroc"
    assert avg.value == pytest.approx(100 * np.mean([u["pixel_auroc"] for u in trials[0].units]))


def test_a_value_without_complete_trial_is_missing_and_the_table_partial(pixel_table):
    cell = pixel_table.cells[("a", "noise.sigma=0.5")]
    assert cell.value is None and "none complete" in cell.reason
    assert pixel_table.partial and len(pixel_table.missing) == 6  # categories, Average, Validation
    validation = pixel_table.cells[("Validation", "noise.sigma=0.2")]
    assert validation.metric_key == "val/pixel_auroc" and validation.value is not None
    md = to_markdown(pixel_table)
    assert "(PARTIAL)" in md and "–*" in md
    assert "σ 0.5 (all rows): no COMPLETE trial with σ 0.5 (1 trial, none complete)" in md


def test_best_value_per_row_is_bold(pixel_table):
    md = to_markdown(pixel_table)
    row = next(line for line in md.splitlines() if line.startswith("| a |"))
    best = pixel_table.cells[("a", "noise.sigma=0.2")]
    assert f"**{best.value:.1f} ± {best.std:.1f}**" in row
    assert pixel_table.best_in_row("a") == {"noise.sigma=0.2"}


def test_published_columns_are_marked_and_sourced(pixel_table):
    pub = [c for c in pixel_table.columns if c.kind == "published"]
    assert {c.label for c in pub} >= {"PaDiM", "SPADE", "DHKD", "BiKD"}
    assert pixel_table.cells[(AVERAGE, "published:bikd")].value == 98.23
    assert pixel_table.cells[(AVERAGE, "published:dhkd")].value == 98.6
    assert pixel_table.cells[("a", "published:spade")].value is None  # not an MVTec category
    md = to_markdown(pixel_table)
    assert "BiKD† (mean only)" in md and "| 98.2 |" in md and "98.23" not in md  # one decimal
    assert "not MVTec AD's" in md and "MKD" in md  # unsourced methods named, not filled


def test_latex_is_booktabs_with_escaped_text(pixel_table):
    tex = to_latex(pixel_table)
    for part in (
        r"\toprule",
        r"\midrule",
        r"\bottomrule",
        r"\textbf{",
        r"$\pm$",
        r"\multicolumn{3}{c}{This study}",
        r"$\sigma$ 0.2",
    ):
        assert part in tex
    assert "pixel_auroc" not in tex.replace(r"pixel\_auroc", "")


def test_every_csv_number_is_the_metric_of_the_run_provenance_names(pixel_table, fake_study):
    """The acceptance check on the hand-made study (the smoke-study test repeats it)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(fake_study[0])
    rows = list(csv.DictReader(io.StringIO(to_csv(pixel_table))))
    prov = {(p["row"], p["column"], p["quantity"]): p for p in provenance_rows(pixel_table)}
    checked = 0
    for row in rows:
        for col in pixel_table.columns:
            if col.kind != "measured" or not row[f"{col.key} mean"]:
                continue
            p = prov[(row["category"], col.key, "mean")]
            metric = client.get_run(p["run_id"]).data.metrics[p["metric_key"]]
            assert row[f"{col.key} mean"] == f"{100 * metric:.1f}"  # rounded as the tables
            assert p["value"] == 100 * metric  # provenance keeps full precision
            checked += 1
    assert checked == 2 * 6  # every measured, non-missing cell (σ 0.5 has no COMPLETE trial)


def test_a_metric_missing_from_a_run_is_a_footnoted_gap(tmp_path, tracking_uri):
    trials = [
        FakeTrial(0, 0.0, 0.1, "COMPLETE", 0.8),
        FakeTrial(1, 0.2, 0.1, "COMPLETE", 0.85, drop=("test/b/pixel_aupro",)),
        FakeTrial(2, 0.5, 0.1, "COMPLETE", 0.82),
    ]
    name = write_study(tmp_path, tracking_uri, trials)
    data = load_study(name, tracking_uri)
    table = build_table(data, columns(data), "pixel_aupro")
    assert table.missing == [("b", "noise.sigma=0.2")]
    assert table.cells[("a", "noise.sigma=0.2")].value is not None
    md = to_markdown(table)
    assert "metric test/b/pixel_aupro missing from run" in md and "PARTIAL: 1 measured cells" in md
    assert ",,," in to_csv(table).splitlines()[2]  # empty, never filled


def test_paired_tests_use_category_seed_units(pixel_table):
    comp = {c.variant: c for c in pixel_table.comparisons}
    assert comp["σ 0.2"].n_pairs == 8 and comp["σ 0.2"].pairing == "category x seed"
    assert comp["σ 0.2"].median_diff == pytest.approx(6.0)
    assert comp["σ 0.2"].p == pytest.approx(2 / 2**8) and comp["σ 0.2"].p_holm is not None
    assert comp["σ 0.5"].p is None and "no COMPLETE trial" in comp["σ 0.5"].reason
