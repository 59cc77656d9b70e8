r"""A Table as LaTeX a paper can use: the table itself, its long notes, and the preamble.

Layouts (`dhkd report --latex-layout`):
    twocolumn (default)  for a two-column paper: `table` when the table reads well in one
                         column, `table*` (the full text width) when it is wider than that;
    onecolumn            `table` across the text width of a one-column paper;
    compact              `table`, means only (the seed std stays in the CSV),
                         footnotesize, tight column spacing: the narrowest form, for one
                         column of a two-column paper.
In every layout a table wider than the line is scaled down to \linewidth (graphicx
\resizebox, never up), so no layout gives an overfull box; headers of several parameters are
stacked one per line. Values have one decimal (published ones too), a seed std follows its mean
in small type, the published columns share one dagger on their group header, and every LaTeX
special character of a name is escaped (`latex_escape`).

The caption holds the short note (what the numbers are, how each column was chosen, the
dagger); the long notes (paired tests, missing-cell reasons, sources) go to
tables/<metric>_notes.tex|.md. tables/preamble.tex names the packages the tables need.
"""

from __future__ import annotations

import re

from dhkd.report.published import load_published
from dhkd.report.render import footnotes
from dhkd.report.select import REFERENCE
from dhkd.report.tables import SUMMARY_ROWS, Cell, Table, TableColumn

LAYOUTS = ("twocolumn", "onecolumn", "compact")
DEFAULT_LAYOUT = "twocolumn"

PREAMBLE = r"""% Packages the dhkd tables in this folder need: put \input{tables/preamble}
% (or these lines) in your document's preamble.
\usepackage{booktabs}      % \toprule, \midrule, \cmidrule, \bottomrule
\usepackage{graphicx}      % \resizebox: a table wider than the line is scaled down to fit
\usepackage[T1]{fontenc}   % _ \ ~ ^ < > in names print (and copy from the PDF) as written
"""

SPECIALS = {
    "\\": r"\textbackslash{}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "_": r"\_",
    "%": r"\%",
    "&": r"\&",
    "#": r"\#",
    "$": r"\$",
    "{": r"\{",
    "}": r"\}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "σ": r"$\sigma$",
    "λ": r"$\lambda$",
    "Δ": r"$\Delta$",
    "±": r"$\pm$",
    "†": r"$^\dagger$",
    "–": "--",
    "—": "---",
    "×": r"$\times$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
}
GROUPS = {"measured": "This study", "reference": "Reference", "published": r"Published$^\dagger$"}
COMPACT_GROUPS = {**GROUPS, "reference": "Ref.", "published": r"Publ.$^\dagger$"}

# Width estimate (pt) of \small cmr text, to choose `table` or `table*`: a table up to
# ONE_COLUMN_PT wide reads well in one column of a two-column paper (scaled to 0.8 or more in
# a 240 pt column; plain article's is 229.5 pt, IEEE's 252 pt).
CHAR_PT = {"small": 4.7, "footnotesize": 4.2}
STD_CHAR_PT = 3.4
TABCOLSEP = {"twocolumn": 6.0, "onecolumn": 6.0, "compact": 3.0}
ONE_COLUMN_PT = 300.0


def latex_escape(text: object) -> str:
    """`text` as LaTeX that prints it as written."""
    return "".join(SPECIALS.get(ch, ch) for ch in str(text))


def breakable(text: str) -> str:
    """Escaped `text` that may break after / and _ (long paths and source names in notes)."""
    return latex_escape(text).replace("/", r"/\allowbreak{}").replace(r"\_", r"\_\allowbreak{}")


def header_lines(col: TableColumn, layout: str) -> list[str]:
    """A column's header, one line per parameter ("σ 0.2, variant spatial" -> two lines);
    compact also breaks a line longer than a value at its spaces."""
    lines = [part.strip() for part in col.label.split(",")]
    if layout == "compact":
        lines = [word for line in lines for word in (line.split() if len(line) > 6 else [line])]
    return lines


def value(cell: Cell, bold: bool, std: bool = True) -> str:
    """One decimal; bold mean where it is the row's best; std in small type after the mean."""
    if cell.value is None:
        return "" if cell.source == "published" else r"--$^*$"
    text = f"{cell.value:.1f}"
    if bold:
        text = rf"\textbf{{{text}}}"
    if std and cell.std is not None:
        text += rf"\,{{\scriptsize$\pm${cell.std:.1f}}}"
    return text


def groups(columns: list[TableColumn]) -> list[tuple[str, int]]:
    """Runs of consecutive columns of one kind: (kind, count)."""
    out: list[tuple[str, int]] = []
    for col in columns:
        if out and out[-1][0] == col.kind:
            out[-1] = (col.kind, out[-1][1] + 1)
        else:
            out.append((col.kind, 1))
    return out


def estimated_width(table: Table, layout: str) -> float:
    """Natural width of the tabular in pt (a character-count estimate, see CHAR_PT)."""
    char = CHAR_PT["footnotesize" if layout == "compact" else "small"]
    pad = 2 * TABCOLSEP[layout]
    width = max(len(r) for r in [*table.rows, "Category"]) * char + pad
    for col in table.columns:
        texts = [len(line) * char for line in header_lines(col, layout)]
        for row in table.rows:
            cell = table.cells[(row, col.key)]
            if cell.value is not None:
                std = 0 if cell.std is None or layout == "compact" else 4 * STD_CHAR_PT
                texts.append(len(f"{cell.value:.1f}") * char + std)
        width += max(texts) + pad
    return width


def environment(table: Table, layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown LaTeX layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    wide = layout == "twocolumn" and estimated_width(table, layout) > ONE_COLUMN_PT
    return "table*" if wide else "table"


def label(table: Table) -> str:
    return re.sub(r"[^A-Za-z0-9:.-]+", "-", f"tab:{table.study}-{table.metric}")


def header_cell(col: TableColumn, layout: str) -> str:
    lines = [latex_escape(line) for line in header_lines(col, layout)]
    if len(lines) == 1:
        return lines[0]
    return r"\begin{tabular}[b]{@{}c@{}}" + r" \\ ".join(lines) + r"\end{tabular}"


def seeds_note(table: Table, layout: str) -> str:
    measured = [c.key for c in table.columns if c.kind != "published"]
    counts = sorted({table.cells[(r, k)].n for r in table.rows for k in measured} - {0})
    if not counts:
        return ""
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}--{counts[-1]}"
    if counts == [1]:
        return "Values: one seed; bold: best measured per row."
    if layout == "compact":
        return f"Values: mean over {n} seeds (std in the CSV); bold: best measured per row."
    return rf"Values: mean $\pm$ std over {n} seeds; bold: best measured per row."


def caption(table: Table, layout: str) -> str:
    """Title and the short note: what the numbers are, how the columns were chosen, the
    dagger, the missing cells."""
    status = " (partial)" if table.partial else ""
    out = [
        rf"{latex_escape(table.title)} (\%) per category, study "
        rf"\texttt{{{latex_escape(table.study)}}}{status}.",
        seeds_note(table, layout),
        latex_escape(table.selection),
    ]
    published = [c.key for c in table.columns if c.kind == "published"]
    if published:
        out.append(r"$^\dagger$Published (MVTec AD, each paper's settings), not measured here")
        mvtec = set(load_published()["categories"])
        if not set(table.rows) - set(SUMMARY_ROWS) <= mvtec:
            out[-1] += "; their Average is over MVTec AD's categories"
        if any(table.cells[(r, k)].value is None for r in table.rows for k in published):
            out[-1] += "; blank: not published"
        out[-1] += "."
    if table.partial:
        out.append(r"--$^*$: no value in MLflow (reasons in the notes).")
    return " ".join(part for part in out if part)


def tabular(table: Table, layout: str) -> list[str]:
    cols = table.columns
    runs = groups(cols)
    out = [rf"\begin{{tabular}}{{@{{}}l{'c' * len(cols)}@{{}}}}", r"\toprule"]
    if len(runs) > 1:
        spans, rules, start = [], [], 2
        for kind, count in runs:
            title = (COMPACT_GROUPS if layout == "compact" else GROUPS).get(kind, kind.title())
            spans.append(rf"\multicolumn{{{count}}}{{c}}{{{title}}}")
            rules.append(rf"\cmidrule(lr){{{start}-{start + count - 1}}}")
            start += count
        out += [" & " + " & ".join(spans) + r" \\", "".join(rules)]
    out += ["Category & " + " & ".join(header_cell(c, layout) for c in cols) + r" \\", r"\midrule"]
    for row in table.rows:
        if row in SUMMARY_ROWS:
            out.append(r"\midrule")
        best = table.best_in_row(row)
        std = layout != "compact"
        texts = [value(table.cells[(row, c.key)], c.key in best, std) for c in cols]
        out.append(latex_escape(row) + " & " + " & ".join(texts) + r" \\")
    return [*out, r"\bottomrule", r"\end{tabular}"]


def to_latex(table: Table, layout: str = DEFAULT_LAYOUT) -> str:
    """The table as a float for a paper in `layout` (see the module docstring)."""
    env = environment(table, layout)
    size = r"\footnotesize" if layout == "compact" else r"\small"
    out = [rf"\begin{{{env}}}[t]", r"\centering", size]
    if layout == "compact":
        out.append(rf"\setlength{{\tabcolsep}}{{{TABCOLSEP['compact']:g}pt}}")
    out += [rf"\caption{{{caption(table, layout)}}}", rf"\label{{{label(table)}}}"]
    out.append(r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%")
    out += tabular(table, layout)
    out += ["}", rf"\end{{{env}}}"]
    return "\n".join(out) + "\n"


def long_notes(table: Table) -> list[str]:
    """The notes a table's caption leaves out, as (possibly indented) lines of plain text."""
    cols = []
    for col in table.columns:
        if col.key == REFERENCE and col.trial is not None:
            cols.append(f"  {col.label}: reference run, MLflow run {col.trial.run_id}")
        elif col.trial is not None:
            cols.append(f"  {col.label}: trial #{col.trial.number}, MLflow run {col.trial.run_id}")
        elif col.kind != "published":
            cols.append(f"  {col.label}: no COMPLETE trial")
    lines = ["Columns:", *cols] if cols else []
    lines += table.notes
    lines += [f"Missing cell, {line.removeprefix('* ')}" for line in footnotes(table)]
    sources = {}
    for col in table.columns:
        if col.kind == "published":
            refs = {table.cells[(r, col.key)].ref for r in table.rows} - {""}
            sources[col.label] = "; ".join(sorted(refs))
    if sources:
        lines.append("Sources of the published columns:")
        lines += [f"  {name}: {ref}" for name, ref in sources.items()]
    return lines


def notes_markdown(table: Table, metric_file: str) -> str:
    out = [f"# Notes to the {table.title} table of study `{table.study}`", ""]
    tex, md = f"{metric_file}.tex", f"{metric_file}.md"
    out += [f"For [{tex}]({tex}) and [{md}]({md}).", ""]
    out += markdown_items(long_notes(table))
    return "\n".join(out) + "\n"


def markdown_items(lines: list[str]) -> list[str]:
    """Plain-text note lines as a Markdown list; a line indented by two spaces is nested."""
    return [f"  - {line.strip()}" if line.startswith("  ") else f"- {line}" for line in lines]


def itemize_lines(lines: list[str]) -> list[str]:
    """Plain-text note lines as \\item lines; a line indented by two spaces goes into a nested
    itemize under the one before it."""
    out, nested = [], False
    for line in lines:
        sub = line.startswith("  ")
        if sub and not nested:
            out.append(r"\begin{itemize}")
        elif nested and not sub:
            out.append(r"\end{itemize}")
        nested = sub
        out.append(rf"\item {breakable(line.strip())}")
    if nested:
        out.append(r"\end{itemize}")
    return out


def notes_latex(table: Table) -> str:
    """The long notes as a LaTeX fragment (an appendix or supplementary section can
    \\input it); nested items keep their indent."""
    heading = (
        rf"\paragraph{{Notes to Table~\ref{{{label(table)}}}}} "
        rf"({latex_escape(table.title)}, study \texttt{{{latex_escape(table.study)}}})."
    )
    return notes_fragment(heading, long_notes(table))


def notes_fragment(heading: str, lines: list[str]) -> str:
    """A notes paragraph `heading` (LaTeX) followed by `lines` as an itemize (itemize_lines),
    set sloppy so long names break instead of running into the margin."""
    out = [r"\begingroup\sloppy", heading, r"\begin{itemize}", *itemize_lines(lines)]
    out += [r"\end{itemize}", r"\endgroup"]
    return "\n".join(out) + "\n"
