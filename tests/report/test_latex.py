"""LaTeX tables: escaping, one dagger and one decimal, layouts, notes beside the table; with
pdflatex (marker `latex`): the paper-size table and every table under reports/ compile in a
one-column and a two-column article with no overfull box, and awkward names print as written."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dhkd.commands.report import register
from dhkd.report import latex_check
from dhkd.report.latex import (
    LAYOUTS,
    PREAMBLE,
    latex_escape,
    notes_latex,
    notes_markdown,
    to_latex,
)

from .latex_helpers import paper_table

REPORTS = Path(__file__).resolve().parents[2] / "reports"
SPECIAL_NAMES = ["metal_nut", "100%", "A&B", "#7", "back\\slash", "ti~lde", "ca^ret"]
INSTALL = "(Debian packages; .ci/run installs them where apt-get and root are available)"
pdflatex = pytest.mark.skipif(
    shutil.which("pdflatex") is None,
    reason="pdflatex not found: install texlive-latex-base and texlive-latex-recommended "
    + INSTALL,
)


def test_every_latex_special_is_escaped():
    assert latex_escape("a_b%c&d#e$f{g}h") == r"a\_b\%c\&d\#e\$f\{g\}h"
    assert latex_escape("x\\y~z^w") == r"x\textbackslash{}y\textasciitilde{}z\textasciicircum{}w"
    assert latex_escape("σ ± <1>") == r"$\sigma$ $\pm$ \textless{}1\textgreater{}"


def test_names_and_headers_are_escaped_in_the_table():
    table = paper_table(SPECIAL_NAMES, variants=("lr 1e-3_x", "w^2 ~ 100%"))
    tex = to_latex(table)
    body = tex[tex.index(r"\midrule") :]
    for name in SPECIAL_NAMES:
        assert latex_escape(name) + " & " in body
    assert r"lr 1e-3\_x & w\textasciicircum{}2 \textasciitilde{} 100\% &" in tex


def test_one_dagger_per_published_group_and_one_decimal_everywhere():
    table = paper_table()
    tex = to_latex(table)
    assert tex.count(r"\dagger") == 2  # the group header and the caption's note
    assert r"\multicolumn{6}{c}{Published$^\dagger$}" in tex
    assert "98.2 \\\\" in tex and "98.23" not in tex  # BiKD's published 98.23
    numbers = [w for w in tex.replace("{", " ").replace("}", " ").split() if w[:1].isdigit()]
    decimals = {len(w.split(".")[1]) for w in numbers if w.count(".") == 1 and w[-1].isdigit()}
    assert decimals == {1}


def test_layouts_pick_the_float_and_the_detail():
    wide = paper_table()
    assert to_latex(wide, "twocolumn").startswith(r"\begin{table*}")
    assert to_latex(wide, "onecolumn").startswith(r"\begin{table}")
    small = paper_table(["stripes", "widget"], variants=("σ 0.0", "σ 0.2"), metric="pixel_aupro")
    assert to_latex(small, "twocolumn").startswith(r"\begin{table}")
    compact = to_latex(wide, "compact")
    assert compact.startswith(r"\begin{table}") and r"\setlength{\tabcolsep}{3pt}" in compact
    assert r"$\pm$" not in compact.split(r"\toprule")[1]  # means only
    assert "std in the CSV" in compact
    for layout in LAYOUTS:  # never wider than the line, never scaled up
        assert r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}" in to_latex(
            wide, layout
        )
    with pytest.raises(ValueError, match="twocolumn, onecolumn, compact"):
        to_latex(wide, "threecolumn")


def test_the_cli_offers_every_layout():
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["report", "s", "--latex-layout", "compact"])
    assert args.latex_layout == "compact"
    assert parser.parse_args(["report", "s"]).latex_layout == "twocolumn"
    action = next(
        a
        for a in parser._subparsers._group_actions[0].choices["report"]._actions
        if a.dest == "latex_layout"
    )
    assert tuple(action.choices) == LAYOUTS


def test_long_notes_go_beside_the_table():
    table = paper_table()
    tex = to_latex(table)
    caption = tex[tex.index(r"\caption") : tex.index(r"\label")]
    assert "mean $\\pm$ std over 3 seeds" in caption and "best complete trial" in caption
    assert "blank: not published" in caption  # DHKD's and BiKD's per-category cells
    assert "sub-item" not in tex and "DRAEM paper" not in tex  # long notes stay out
    notes = notes_latex(table)
    assert notes.count(r"\begin{itemize}") == 4  # the list; columns, sub-item, sources
    assert (
        r"\item the sub-item, indented." in notes and r"\item kNN: trial \#4, MLflow run" in notes
    )
    assert "DRAEM paper, Table 2" in notes and "metric missing from run run0000" in notes
    assert (
        r"\ref{tab:noise-level-pixel-auroc}" in notes
        and r"\label{tab:noise-level-pixel-auroc}" in tex
    )
    md = notes_markdown(table, "pixel_auroc")
    assert "  - the sub-item, indented." in md and "[pixel_auroc.tex](pixel_auroc.tex)" in md


def _write(folder: Path, tables: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "preamble.tex").write_text(PREAMBLE)
    for name, text in tables.items():
        (folder / f"{name}.tex").write_text(text)
    return folder


@pytest.mark.latex
@pdflatex
@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_paper_size_table_fits_one_and_two_column_papers(tmp_path, layout):
    """15 categories, 4 variants, a reference and the published columns: `table*` in a
    two-column paper, `table` on a one-column page, no overfull box in either document."""
    table = paper_table()
    folder = _write(tmp_path, {"pixel_auroc": to_latex(table, layout)})
    (folder / "pixel_auroc_notes.tex").write_text(notes_latex(table))
    results = latex_check.check(folder)
    assert len(results) == 4
    assert all(r.ok for r in results), [r.text() for r in results]


@pytest.mark.latex
@pdflatex
def test_the_check_fails_an_overfull_table(tmp_path, capsys):
    row = " & ".join(["99.9"] * 30)
    wide = rf"\begin{{tabular}}{{{'c' * 30}}}\toprule {row} \\ \bottomrule\end{{tabular}}"
    folder = _write(tmp_path, {"wide": wide})
    results = latex_check.check(folder)
    assert not any(r.ok for r in results)
    assert all(r.overfull[0].startswith("\\hbox") and "too wide" in r.overfull[0] for r in results)
    assert latex_check.main([str(folder)]) == 1
    assert "0/2 builds ok" in capsys.readouterr().out


@pytest.mark.latex
@pdflatex
@pytest.mark.skipif(
    shutil.which("pdftotext") is None,
    reason=f"pdftotext not found: install poppler-utils {INSTALL}",
)
def test_special_names_print_as_written(tmp_path):
    table = paper_table(SPECIAL_NAMES, variants=("w^2 ~ 100%", "a_b & c#d"))
    _write(tmp_path, {"table": to_latex(table, "onecolumn")})
    (tmp_path / "doc.tex").write_text(latex_check.document("onecolumn"))
    cmd = ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"]
    subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, timeout=120)
    text = subprocess.run(
        ["pdftotext", "-layout", "doc.pdf", "-"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for name in [*SPECIAL_NAMES, "w^2 ~ 100%", "a_b & c#d"]:
        assert name in text, name


@pytest.mark.latex
@pdflatex
@pytest.mark.skipif(
    shutil.which("pdftoppm") is None, reason=f"pdftoppm not found: install poppler-utils {INSTALL}"
)
@pytest.mark.slow
def test_every_table_under_reports_compiles_without_overfull_boxes(tmp_path):
    """Every table fragment in both layouts; the worked example's pages rendered to PNG too."""
    tables = latex_check.tables_under(REPORTS)
    assert any(p.name == "pixel_aupro.tex" for p in tables)
    rendered = latex_check.check(REPORTS / "quickstart", tmp_path / "png")
    others = [r for d in sorted(REPORTS.iterdir()) if d.is_dir() and d.name != "quickstart"
              for r in latex_check.check(d)]  # fmt: skip
    results = [*rendered, *others]
    assert len(results) == 2 * len(tables)
    assert all(r.ok for r in results), [r.text() for r in results if not r.ok]
    assert all(r.pngs for r in rendered)


@pdflatex
@pytest.mark.slow
def test_the_committed_suite_document_compiles_without_overfull_boxes(tmp_path):
    """reports/local/main.tex as committed, built where it lies (a copy): no error, no overfull
    box, and its tables are left to the fragment check above."""
    from dhkd.suite.document import compile_pdf

    folder = tmp_path / "local"
    shutil.copytree(REPORTS / "local", folder)
    (folder / "main.pdf").unlink()
    assert compile_pdf(folder) == {"compiled": True, "errors": [], "overfull": []}
    assert (folder / "main.pdf").stat().st_size > 100_000
    assert REPORTS / "local" / "main.tex" not in latex_check.tables_under(REPORTS)
