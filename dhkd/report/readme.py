"""The report's index page (README.md): what was read, the tables, the figures, the notes."""

from __future__ import annotations

from typing import Any

from dhkd.data.selection import protocol_label
from dhkd.report.agreement import agreement_markdown
from dhkd.report.collect import StudyData
from dhkd.report.loo_study import readme_lines as loo_lines
from dhkd.report.render import to_markdown
from dhkd.report.select import REFERENCE, Column, best_trial, compute_hours
from dhkd.report.threshold_table import readme_lines as threshold_lines

FIGURE_TEXT = {
    "param_": "Metrics vs the scientific parameter {key}, per category (thin) and averaged "
    "(black), best trial per value, error bars = std over seeds; grey dots = every COMPLETE "
    "trial's average.",
    "bars_": "{key} per category for every column of the table (error bars = std over seeds).",
    "importances": "Hyperparameter importances for the objective (Optuna's default, PED-ANOVA).",
    "history": "Optimisation history (best so far in red) and the learning curves per trial.",
    "parallel": "Parallel coordinates of every final trial, coloured by the objective.",
    "qualitative": "Test images, ground truth and anomaly maps of the best trial "
    "(full-size grids in figures/qualitative/).",
}


LAYOUT_TEXT = {  # by `dhkd report --latex-layout`
    "twocolumn": "two-column paper, `table*` where a table needs the full width "
    "(`--latex-layout twocolumn`)",
    "onecolumn": "one-column paper (`--latex-layout onecolumn`)",
    "compact": "column of a two-column paper, means only in small type (`--latex-layout compact`)",
}


def _counts(data: StudyData) -> str:
    counts: dict[str, int] = {}
    for t in data.trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def _figure_lines(result) -> list[str]:
    lines = []
    for path in result.figures:
        if path.suffix != ".png":
            continue
        stem = path.stem
        prefix = next((p for p in FIGURE_TEXT if stem.startswith(p)), None)
        text = FIGURE_TEXT.get(prefix, stem).format(key=stem.removeprefix(prefix or ""))
        rel = path.relative_to(result.out).as_posix()
        lines += [f"**{stem}** - {text}", "", f"![{stem}]({rel})", ""]
    if lines:
        lines.insert(0, "Each figure is also written as a PDF beside its PNG, for LaTeX.\n")
    return lines


def summary_lines(data: StudyData, cols: list[Column], meta: dict[str, Any]) -> list[str]:
    metric, mode = data.objective
    spec = data.spec
    best = best_trial(data, data.trials)
    sci = (
        "; ".join(
            f"{k} {p.get('values', [p.get('low'), p.get('high')])}"
            for k, p in (spec.get("scientific") or {}).items()
        )
        or "none (a search)"
    )
    nuis = ", ".join(spec.get("nuisance") or {}) or "none"
    lines = [
        f"- Study: {spec.get('description') or data.name}",
        f"- Read from MLflow `{meta['tracking_uri']}`: experiment {data.experiment_id}, study run "
        f"`{data.study_run_id}`; generated {meta['generated']}",
        f"- Trials: {len(data.trials)} ({_counts(data)}); objective: {mode} validation {metric} "
        "(mean over categories)",
        f"- Selection protocol `{data.protocol}`: {protocol_label(data.protocol)}; each table's "
        "Validation row holds the numbers that chose, the other rows the test numbers",
        f"- Scientific: {sci}; nuisance (tuned): {nuis}",
        f"- Categories: {', '.join(data.categories)}; seeds: {spec.get('seeds')}",
    ]
    if best is not None:
        size = best.params.get("data.image_size", "?")
        lines.append(
            f"- Best trial: #{best.number} (run `{best.run_id}`), objective "
            f"{data.objective_value(best):.4f}; metrics computed on anomaly maps at the input "
            f"resolution, {size}x{size} px (data.image_size)"
        )
    kept = meta.get("weights") or {}
    lines.append(
        f"- Weights kept: {kept.get('trials', 0)} of {len(data.trials)} trials, "
        f"{kept.get('bytes', 0) / 2**20:.1f} MiB (checkpoint.pt artifacts of their runs; "
        "`dhkd predict --run RUN_ID`, `dhkd reproduce RUN_ID`)"
    )
    lines.append("- Columns: " + "; ".join(f"{c.label}: " + _column_source(c) for c in cols))
    compute = f"- Compute, every trial of the study: {_hours(compute_hours(data.trials))}"
    if data.reference is not None:
        compute += f"; the reference: {_hours(compute_hours([data.reference]))}"
    lines.append(compute)
    return lines


def _column_source(col: Column) -> str:
    compute = f"compute {_hours(col.compute)}"
    if col.key == REFERENCE and col.trial is not None:
        return (
            f"reference run (`{col.trial.run_id}`), measured once per (category, seed), " + compute
        )
    done = f"{col.n_complete}/{col.n_trials} complete"
    if col.trial is None:
        return f"no COMPLETE trial, {done}, {compute}"
    return f"trial #{col.trial.number} (`{col.trial.run_id}`), {done}, {compute}"


def _hours(compute: dict[str, float]) -> str:
    return (
        f"{compute.get('gpu', 0.0):.3g} GPU-h, {compute.get('cpu', 0.0):.3g} CPU-h, "
        f"{compute.get('wall', 0.0):.3g} trial-h"
    )


def write_readme(data: StudyData, cols: list[Column], result, meta: dict[str, Any]) -> None:
    lines = [f"# Report: study `{data.name}`", ""]
    if meta.get("command"):
        lines += [
            "Regenerate with (paths are relative to the folder the report was made from; `…/`"
            " stands for a folder outside it, elided as it names that machine):",
            "",
            "```",
            meta["command"],
            "```",
            "",
        ]
    lines += summary_lines(data, cols, meta)
    lines += [
        "",
        "Every number in the tables comes from the MLflow run named in "
        "[provenance.csv](provenance.csv) (run id + metric key; seed spreads from the "
        "run's metrics.json artifact; published columns from their papers).",
        "",
        "## Tables",
        "",
    ]
    lines += [agreement_markdown(data, cols), ""]  # how far the validation row can be trusted
    for metric, table in result.tables.items():
        lines.append(to_markdown(table).replace("### ", "### ", 1))
        lines.append(
            f"Files: [Markdown](tables/{metric}.md), [LaTeX](tables/{metric}.tex), "
            f"[CSV](tables/{metric}.csv), notes ([Markdown](tables/{metric}_notes.md), "
            f"[LaTeX](tables/{metric}_notes.tex))"
        )
        lines.append("")
    lines += [
        f"LaTeX: the tables are laid out for a {LAYOUT_TEXT[meta['latex_layout']]}; "
        "they need the packages in [tables/preamble.tex](tables/preamble.tex) (booktabs, "
        "graphicx; `\\input` it in your preamble). Each caption holds the short note; the long "
        "notes (paired tests, missing cells, sources) are in `tables/<metric>_notes.tex|.md`. "
        "`python -m dhkd.report.latex_check DIR --out PNGDIR` compiles them in a one- and a "
        "two-column article and renders them to PNG.",
        "",
    ]
    if result.loo is not None:
        lines += loo_lines(result.loo, data.protocol)
    lines += threshold_lines(result.threshold)
    lines += ["## Figures", "", *_figure_lines(result)]
    if result.notes:
        lines += ["## Notes", "", *(f"- {n}" for n in result.notes), ""]
    (result.out / "README.md").write_text("\n".join(lines))
