"""`dhkd report` end to end on a hand-made study: files, figures, MLflow artifacts, errors."""

from __future__ import annotations

import json

import pytest

from dhkd.cli import main
from dhkd.report import build_report
from dhkd.report.build import clean

from .report_helpers import default_trials, write_study

FIGURES = (
    "param_noise.sigma",
    "bars_image_auroc",
    "bars_pixel_auroc",
    "bars_pixel_aupro",
    "importances",
    "history",
    "parallel",
    "qualitative",
)


@pytest.fixture(scope="module")
def report(fake_study, tmp_path_factory):
    uri, name, _ = fake_study
    out = tmp_path_factory.mktemp("report") / "out"
    return build_report(name, uri, out, paper=True, log_artifacts=False), out


def test_tables_figures_and_provenance_are_written(report):
    from matplotlib.image import imread

    _, out = report
    for metric in ("image_auroc", "pixel_auroc", "pixel_aupro"):
        for ext in ("md", "tex", "csv"):
            assert (out / "tables" / f"{metric}.{ext}").stat().st_size > 200
        for ext in ("md", "tex"):
            assert "Wilcoxon" in (out / "tables" / f"{metric}_notes.{ext}").read_text()
        assert "Wilcoxon" not in (out / "tables" / f"{metric}.tex").read_text()
    assert r"\usepackage{booktabs}" in (out / "tables" / "preamble.tex").read_text()
    for name in FIGURES:
        png = imread(out / "figures" / f"{name}.png")
        assert png.shape[0] > 200 and png.shape[1] > 300 and png.std() > 0.01, name
        assert (out / "figures" / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
    assert sorted(p.name for p in (out / "figures" / "qualitative").iterdir()) == [
        f"maps_{c}_s0.png" for c in "abcd"
    ]
    prov = json.loads((out / "provenance.json").read_text())
    assert {p["source"] for p in prov} == {"mlflow metric (x100)", "mlflow artifact", "published"}
    readme = (out / "README.md").read_text()
    assert "figures/qualitative.png" in readme and "provenance.csv" in readme
    assert "Best trial: #1" in readme and "4x4" not in readme
    assert "tables/preamble.tex" in readme and "tables/pixel_aupro_notes.tex" in readme
    # compute per column (sigma 0.0: trials 0, 4, 5; 0.2: 1, 2; 0.5: 3) and for the study
    assert (
        "3/3 complete" not in readme
        and "2/3 complete, compute 0 GPU-h, 12 CPU-h, 1.5 trial-h" in readme
    )
    assert "2/2 complete, compute 0 GPU-h, 5 CPU-h, 1 trial-h" in readme
    assert "- Compute, every trial of the study: 0 GPU-h, 21 CPU-h, 3 trial-h" in readme


def test_the_html_report_is_self_contained(report):
    """README.html embeds every figure and links only inside itself (MLflow shows it in a
    sandboxed iframe, where a relative path cannot resolve)."""
    import re

    _, out = report
    page = (out / "README.html").read_text()
    images = re.findall(r'<img alt="([^"]+)" src="([^"]+)"', page)
    assert sorted(alt for alt, _ in images) == sorted(FIGURES)
    assert all(src.startswith("data:image/png;base64,iVBOR") for _, src in images)
    links = re.findall(r'href="([^"]+)"', page)
    ids = set(re.findall(r' id="([^"]+)"', page))
    assert links and all(link.startswith("#") and link[1:] in ids for link in links)
    assert "#file-provenance-csv" in links and "#file-tables-pixel-aupro-csv" in links
    assert "<th>category</th>" in page  # the CSVs as HTML tables
    assert "Each figure is also written as a PDF beside its PNG" in page
    assert ".pdf" not in (out / "README.md").read_text()  # named once, never linked


@pytest.mark.slow
def test_report_is_logged_to_the_study_run(tmp_path, tracking_uri, capsys):
    from mlflow.tracking import MlflowClient

    name = write_study(tmp_path, tracking_uri, default_trials(), name="logged")
    out = tmp_path / "out"
    args = ["report", name, "--tracking-uri", tracking_uri, "--out", str(out), "--baseline", "0.2"]
    assert main(args) == 0
    assert "4 categories x 3 columns, PARTIAL (6 cells missing)" in capsys.readouterr().out
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name).experiment_id
    study_run = client.search_runs([experiment], "tags.`dhkd.role` = 'study'")[0]
    logged = {a.path for a in client.list_artifacts(study_run.info.run_id, "report")}
    assert {"report/README.md", "report/README.html", "report/tables", "report/figures"} <= logged
    assert "baseline σ 0.2" in (out / "tables" / "image_auroc.md").read_text()
    assert "--baseline 0.2" in (out / "README.md").read_text()  # the command to regenerate


def test_rerun_replaces_only_its_own_outputs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    clean(out)  # empty folder: fine, marks it
    (out / "figures").mkdir()
    (out / "figures" / "stale.png").write_bytes(b"x")
    (out / "mine.txt").write_text("kept")
    clean(out)
    assert not (out / "figures").exists() and (out / "mine.txt").exists()


def test_bad_input_is_a_clear_message(fake_study, tmp_path, capsys):
    uri, name, _ = fake_study
    assert main(["report", "nope", "--tracking-uri", uri, "--no-log"]) == 2
    assert f"studies there: {name}" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["report", name, "--tracking-uri", uri, "--out", str(tmp_path), "--no-log"]) == 2
    assert "not empty" in capsys.readouterr().err and (tmp_path / "notes.txt").exists()
    bad = [
        "report",
        name,
        "--tracking-uri",
        uri,
        "--out",
        str(tmp_path / "o"),
        "--no-log",
        "--baseline",
        "0.7",
    ]
    assert main(bad) == 2
    assert "matches no column" in capsys.readouterr().err


@pytest.mark.slow
def test_a_search_without_categorical_scientific_reports_its_best_trial(tmp_path, tracking_uri):
    from .report_helpers import FakeTrial

    trials = [
        FakeTrial(0, 0.1, 0.1, "COMPLETE", 0.8),
        FakeTrial(1, 0.4, 0.2, "COMPLETE", 0.84),
        FakeTrial(2, 0.7, 0.3, "PRUNED", 0.6),
        FakeTrial(3, 0.9, 0.4, "COMPLETE", 0.82),
    ]
    sigma = {"noise.sigma": {"type": "float", "low": 0.0, "high": 1.0}}
    name = write_study(tmp_path, tracking_uri, trials, name="srch", scientific=sigma)
    result = build_report(name, tracking_uri, tmp_path / "out", log_artifacts=False)
    table = result.tables["pixel_aupro"]
    assert [c.label for c in table.columns] == ["best trial #1"] and not table.partial
    assert not table.comparisons
    names = {p.name for p in result.figures}
    assert {"param_noise.sigma.png", "importances.png", "parallel.png"} <= names


@pytest.mark.slow
def test_a_storage_path_that_is_not_a_folder_is_said_on_the_console(fake_study, tmp_path, capsys):
    uri, name, _ = fake_study
    missing = tmp_path / "no-such-ray"
    args = ["report", name, "--tracking-uri", uri, "--out", str(tmp_path / "out"), "--no-log",
            "--storage-path", str(missing)]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"warning: --storage-path {missing} is not a folder" in err
    assert "rebuilds the Optuna study from MLflow" in err
