"""A Table as Markdown, CSV, and provenance rows (one per number); LaTeX is latex.py's.

Display: percent with one decimal (published values too), `mean ± std` where several seeds
exist, best measured value per row in bold, `–*` for a missing cell (footnoted with its reason),
`†` on published columns. CSV keeps full precision (percent) so every number can be checked
against MLflow (and the published values as printed).
"""

from __future__ import annotations

import csv
import io

from dhkd.report.select import REFERENCE
from dhkd.report.tables import AVERAGE, SUMMARY_ROWS, VALIDATION, Cell, Table, TableColumn

MISSING = "–"


def header(col: TableColumn) -> str:
    if col.kind == "published":
        return f"{col.label}†" + (f" ({col.note})" if col.note else "")
    if col.trial is not None and col.key not in ("best", REFERENCE):
        return f"{col.label} (#{col.trial.number})"
    return col.label


def cell_text(cell: Cell) -> str:
    if cell.value is None:
        return "" if cell.source == "published" else f"{MISSING}*"
    text = f"{cell.value:.1f}"
    return f"{text} ± {cell.std:.1f}" if cell.std is not None else text


def footnotes(table: Table) -> list[str]:
    """One footnote per (column, reason), naming its rows."""
    labels = {c.key: c.label for c in table.columns}
    grouped: dict[tuple[str, str], list[str]] = {}
    for row, key in table.missing:
        grouped.setdefault((key, table.cells[(row, key)].reason), []).append(row)
    lines = []
    for (key, reason), rows in grouped.items():
        where = "all rows" if len(rows) == len(table.rows) else ", ".join(rows)
        lines.append(f"* {labels[key]} ({where}): {reason}")
    return lines


def to_markdown(table: Table) -> str:
    cols = table.columns
    status = " (PARTIAL)" if table.partial else ""
    lines = [f"### {table.title} — study `{table.study}`{status}", ""]
    lines.append("| Category | " + " | ".join(header(c) for c in cols) + " |")
    lines.append("|:--|" + "|".join("--:" for _ in cols) + "|")
    for row in table.rows:
        best = table.best_in_row(row)
        texts = []
        for c in cols:
            text = cell_text(table.cells[(row, c.key)])
            texts.append(f"**{text}**" if c.key in best else text)
        name = f"**{row}**" if row in SUMMARY_ROWS else row
        lines.append(f"| {name} | " + " | ".join(texts) + " |")
    lines.append("")
    for note in [*table.notes, *footnotes(table)]:
        lines.append(f"  - {note.strip()}" if note.startswith("  ") else f"- {note}")
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """Wide CSV: category, then `<key> mean|std|n` per measured column and `<key>` per
    published column; percent with one decimal as in the tables (provenance.csv keeps full
    precision), empty where there is no value."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    head = ["category"]
    for c in table.columns:
        head += [f"{c.key} mean", f"{c.key} std", f"{c.key} n"] if c.kind == "measured" else [c.key]
    writer.writerow(head)
    for row in table.rows:
        line: list[object] = [row]
        for c in table.columns:
            cell = table.cells[(row, c.key)]
            value = "" if cell.value is None else f"{cell.value:.1f}"
            if c.kind == "measured":
                std = "" if cell.std is None else f"{cell.std:.1f}"
                line += [value, std, cell.n if cell.value is not None else ""]
            else:
                line.append(value)
        writer.writerow(line)
    return buf.getvalue()


FINGERPRINT_FIELDS = {  # provenance column -> MLflow tag of the trial (dhkd/fingerprint.py)
    "code_commit": "dhkd.fp.code_commit",
    "code_dirty": "dhkd.fp.code_dirty",
    "device": "dhkd.fp.device",
    "data_fingerprint": "dhkd.fp.data",
}


def fingerprint_fields(tags: dict[str, str]) -> dict[str, str]:
    return {column: tags.get(tag, "") for column, tag in FINGERPRINT_FIELDS.items()}


def provenance_rows(table: Table) -> list[dict[str, object]]:
    """One row per number in the CSV: where it comes from (run id and metric key, artifact, or
    the published table)."""
    rows = []
    for row in table.rows:
        for c in table.columns:
            cell = table.cells[(row, c.key)]
            if cell.value is None:
                continue
            base = {"table": table.metric, "row": row, "column": c.key, "label": c.label}
            if cell.source == "published":
                rows.append(
                    {
                        **base,
                        "quantity": "value",
                        "value": cell.value,
                        "source": "published",
                        "reference": cell.ref,
                    }
                )
                continue
            trial = {
                "run_id": cell.run_id,
                "trial_number": c.trial.number if c.trial else None,
                **fingerprint_fields(c.trial.tags if c.trial else {}),
            }
            rows.append(
                {
                    **base,
                    "quantity": "mean",
                    "value": cell.value,
                    "source": "mlflow metric (x100)",
                    "metric_key": cell.metric_key,
                    "mlflow_value": cell.raw,
                    **trial,
                }
            )
            if cell.std is not None:
                what = {AVERAGE: "mean over categories", VALIDATION: "validation mean over "
                        "categories"}.get(row, f"category {row}")  # fmt: skip
                ref = f"metrics.json units: {what}, seeds {cell.seeds}, metric {table.metric}"
                rows.append(
                    {
                        **base,
                        "quantity": "std",
                        "value": cell.std,
                        "source": "mlflow artifact",
                        "reference": ref.replace("  ", " "),
                        **trial,
                    }
                )
    return rows
