r"""`dhkd suite report`: one document for a whole suite, read back from MLflow.

Output folder (default reports/<suite>):
    README.md / README.html   the document as Markdown and as one self-contained page
    main.tex, main.pdf        \input's every table, includes every figure; pdflatex
    tables/main_<metric>.md|.tex|.csv (+ _notes)   the main table: per category and mean,
                              DHKD, BiKD and the kNN reference of the comparison study, with
                              the published columns (dhkd/report/published_results.json)
    tables/ablation_<study>.md|.tex|.csv (+ _notes)   one per ablation study (ablation.py)
    tables/loo_<study>.md|.tex|.csv   per ablation, the row each held-out category chooses on
                              the others' test numbers, beside the kNN reference (held_out.py)
    tables/preamble.tex       the packages the tables need
    figures/sensitivity.png   metrics vs each numeric ablation parameter (sensitivity.py)
    figures/qualitative.png   anomaly maps across categories and methods (qualitative.py)
    provenance.csv|.json      every number: study, MLflow run id, metric key, logged value
    document.json             what was read: tracking URI, studies, code commits, plan vs actual

The comparison study is the suite's study whose only scientific parameter is `method`; the
ablations are the others with categorical scientific parameters. Nothing is filled in: a study
that has not run, or a trial that did not complete, shows as missing, and the document says so.
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dhkd.errors import DhkdError
from dhkd.report.build import clean
from dhkd.report.collect import METRICS, StudyData, load_study
from dhkd.report.html import write_html
from dhkd.report.latex import (
    PREAMBLE,
    label,
    latex_escape,
    markdown_items,
    notes_latex,
    notes_markdown,
    to_latex,
)
from dhkd.report.latex_check import log_findings
from dhkd.report.loo import to_markdown as loo_markdown
from dhkd.report.paths import portable_text
from dhkd.report.render import FINGERPRINT_FIELDS, provenance_rows, to_csv, to_markdown
from dhkd.report.select import REFERENCE, columns
from dhkd.report.tables import Table, build_table
from dhkd.study.design.spec import StudySpec
from dhkd.suite import render as R
from dhkd.suite.ablation import Ablation, build_ablation, findings, method_title, provenance
from dhkd.suite.held_out import AblationLoo, ablation_loo, reference_of
from dhkd.suite.held_out import write as write_held_out
from dhkd.suite.run import summary_path
from dhkd.suite.sensitivity import numeric, points, sensitivity_figure
from dhkd.suite.spec import SuiteSpec

OUTPUTS = (
    "tables",
    "figures",
    "README.md",
    "README.html",
    "main.tex",
    "main.pdf",
    "provenance.csv",
    "provenance.json",
    "document.json",
)
MARKER = ".dhkd-suite-report"
DPI = 110
PUBLISHED = ("dhkd", "bikd")  # the published columns of the main table: the two methods' papers


@dataclass
class Document:
    out: Path
    main: dict[str, Table] = field(default_factory=dict)
    comparison: str | None = None
    ablations: list[Ablation] = field(default_factory=list)
    held_out: dict[str, AblationLoo] = field(default_factory=dict)  # ablation study -> table
    figures: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    provenance: list[dict[str, Any]] = field(default_factory=list)
    latex: dict[str, Any] = field(default_factory=dict)  # {"compiled", "errors", "overfull"}


def comparison_spec(specs: list[StudySpec]) -> StudySpec | None:
    return next((s for s in specs if list(s.scientific) == ["method"]), None)


def load_studies(
    specs: list[StudySpec], tracking_uri: str, notes: list[str]
) -> list[tuple[StudySpec, StudyData]]:
    """The suite's studies found in MLflow; a missing one becomes a note."""
    found = []
    for spec in specs:
        try:
            found.append((spec, load_study(spec.name, tracking_uri)))
        except DhkdError as exc:
            notes.append(
                f"study {spec.name} is not in the tracking store ({exc}); its table is "
                "missing: run the suite (dhkd suite run) first"
            )
    if not found:
        raise DhkdError(
            f"none of the suite's studies ({', '.join(s.name for s in specs)}) is in {tracking_uri}"
            "; run the suite first (dhkd suite run SUITE), or pass the --tracking-uri it used"
        )
    return found


def main_tables(data: StudyData, layout: str, folder: Path, doc: Document) -> None:
    cols = columns(data)
    for col in cols:
        if "method" in col.assignment:
            col.label = method_title(str(col.assignment["method"]))
        elif col.key == REFERENCE:
            col.label = f"{method_title(data.reference.params.get('method', 'knn'))} (reference)"
    for metric in METRICS:
        table = build_table(data, cols, metric, paper=True, published=PUBLISHED)
        doc.main[metric] = table
        stem = f"main_{metric}"
        (folder / f"{stem}.md").write_text(to_markdown(table))
        (folder / f"{stem}.tex").write_text(to_latex(table, layout))
        (folder / f"{stem}_notes.md").write_text(notes_markdown(table, stem))
        (folder / f"{stem}_notes.tex").write_text(notes_latex(table))
        (folder / f"{stem}.csv").write_text(to_csv(table))
        for row in provenance_rows(table):
            doc.provenance.append({**row, "table": stem, "study": data.name})


def ablation_tables(found, layout: str, folder: Path, doc: Document) -> None:
    compare = next((d for s, d in found if s.name == doc.comparison), None)
    reference = reference_of(compare)
    for spec, data in found:
        if spec.name == doc.comparison or not any(
            p.type == "categorical" for p in spec.scientific.values()
        ):
            continue
        ablation = build_ablation(spec, data, found)
        doc.ablations.append(ablation)
        stem = f"ablation_{spec.name}"
        (folder / f"{stem}.md").write_text(R.to_markdown(ablation))
        (folder / f"{stem}.tex").write_text(R.to_latex(ablation, layout))
        (folder / f"{stem}.csv").write_text(R.to_csv(ablation))
        (folder / f"{stem}_notes.tex").write_text(R.notes_latex(ablation))
        lines = [f"# Notes to the ablation table of study `{spec.name}`", ""]
        lines += markdown_items(R.notes(ablation))
        (folder / f"{stem}_notes.md").write_text("\n".join(lines) + "\n")
        doc.provenance += provenance(ablation)
        held = ablation_loo(ablation, reference, doc.notes)
        if held is not None:
            doc.held_out[spec.name] = held
            write_held_out(held, folder, layout)
            doc.provenance += held.provenance


def _save_png(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def figures(suite: SuiteSpec, found, tracking_uri: str, doc: Document, workdir: Path) -> None:
    folder = doc.out / "figures"
    fig = sensitivity_figure(
        doc.ablations,
        f"Suite {suite.name}: each test metric's change from the default setting, against "
        "each numeric ablation parameter",
    )
    if fig is None:
        doc.notes.append("No sensitivity figure: no ablation varies one numeric parameter.")
    else:
        doc.figures["sensitivity"] = _save_png(fig, folder / "sensitivity.png")
        doc.provenance += [p for a in doc.ablations if numeric(a) for p in points(a)]
    compare = next((data for spec, data in found if spec.name == doc.comparison), None)
    if compare is None:
        doc.notes.append("No qualitative figure: the suite has no comparison study in MLflow.")
        return
    runs = {}
    for col in columns(compare):
        if col.trial is None:
            continue
        if "method" in col.assignment:
            runs[method_title(str(col.assignment["method"]))] = col.trial.run_id
        elif col.key == REFERENCE:
            runs[method_title(col.trial.params.get("method", "knn"))] = col.trial.run_id
    from dhkd.suite.qualitative import qualitative_figure

    seed = suite.seeds[0] if suite.seeds else 0
    path, rows, notes = qualitative_figure(
        tracking_uri, runs, compare.categories, seed, folder, workdir, suite.seeds or ()
    )
    doc.notes += notes
    doc.provenance += rows
    if path is not None:
        doc.figures["qualitative"] = path


def plan_vs_actual(suite: SuiteSpec, storage_path: str | Path | None) -> dict[str, Any] | None:
    """Each invocation of `dhkd suite run` that ran something: the plan's estimate of its work
    (what was left when it started) beside its wall time, from STORAGE/suites/SUITE.json."""
    if storage_path is None:
        return None
    path = summary_path(storage_path, suite.name)
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    first = (summary.get("estimate") or {}).get("wall_s")
    runs = []
    for i, run in enumerate(summary.get("runs", [])):
        estimate = run.get("estimate_wall_s", first if i == 0 else None)
        if run.get("studies_run"):
            runs.append({"started": run.get("started"), "estimate_wall_s": estimate,
                         "wall_s": run.get("wall_s"), "studies": len(run["studies_run"]),
                         "finished": run.get("finished")})  # fmt: skip
    return {"runs": runs, "actual_wall_s": (summary.get("actual") or {}).get("wall_s"),
            "finished": summary.get("finished")}  # fmt: skip


def code_commits(found) -> list[str]:
    tag = FINGERPRINT_FIELDS["code_commit"]
    commits = {t.tags.get(tag) for _, data in found for t in data.complete} - {None, ""}
    return sorted(commits)


def build_document(
    suite: SuiteSpec,
    specs: list[StudySpec],
    tracking_uri: str,
    out: str | Path,
    *,
    storage_path: str | Path | None = None,
    layout: str = "twocolumn",
    pdf: bool = True,
    command: str = "",
) -> Document:
    """Write the suite's document into `out` (see the module docstring)."""
    if layout not in ("twocolumn", "onecolumn"):
        raise DhkdError(f"unknown layout {layout!r}; choose twocolumn or onecolumn")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clean(out, OUTPUTS, MARKER, "dhkd suite report", "suite document")
    doc = Document(out)
    found = load_studies(specs, tracking_uri, doc.notes)
    tables = out / "tables"
    tables.mkdir()
    (tables / "preamble.tex").write_text(PREAMBLE)
    spec = comparison_spec([s for s, _ in found])
    if spec is None:
        doc.notes.append(
            "No main table: the suite has no study whose only scientific "
            "parameter is `method` (the method comparison)."
        )
    else:
        doc.comparison = spec.name
        main_tables(dict((s.name, d) for s, d in found)[spec.name], layout, tables, doc)
    ablation_tables(found, layout, tables, doc)
    scratch = out / ".work"
    try:
        figures(suite, found, tracking_uri, doc, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    timing = plan_vs_actual(suite, storage_path)
    meta = {
        "suite": suite.name,
        "source": portable_text(suite.source),
        "tracking_uri": portable_text(tracking_uri),
        "generated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": portable_text(command),
        "layout": layout,
        "studies": {
            d.name: {
                "experiment_id": d.experiment_id,
                "study_run_id": d.study_run_id,
                "trials": len(d.trials),
                "complete": len(d.complete),
            }
            for _, d in found
        },
        "code_commits": code_commits(found),
        "plan_vs_actual": timing,
        "notes": [portable_text(n) for n in doc.notes],
    }
    write_provenance(doc)
    (out / "main.tex").write_text(main_tex(suite, found, doc, layout, meta))
    if pdf:
        doc.latex = compile_pdf(out)
        meta["latex"] = doc.latex
    (out / "document.json").write_text(json.dumps(meta, indent=1) + "\n")
    (out / "README.md").write_text(readme(suite, found, doc, meta))
    write_html(out, f"Suite {suite.name}")
    return doc


def write_provenance(doc: Document) -> None:
    import csv

    fields = list(dict.fromkeys(k for row in doc.provenance for k in row))
    with open(doc.out / "provenance.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(doc.provenance)
    text = json.dumps(doc.provenance, indent=1, ensure_ascii=False, default=str)
    (doc.out / "provenance.json").write_text(text + "\n")


def _units_text(suite: SuiteSpec, found) -> str:
    categories = list(dict.fromkeys(c for _, d in found for c in d.categories))
    seeds = ", ".join(str(s) for s in suite.seeds) if suite.seeds else "per study"
    return f"{len(categories)} categories ({', '.join(categories)}), seeds {seeds}"


def _protocol(found) -> str:
    from dhkd.data.selection import protocol_label

    protocols = sorted({d.protocol for _, d in found})
    return "; ".join(f"{p}: {protocol_label(p)}" for p in protocols)


def _timing_text(timing: dict[str, Any] | None) -> str:
    runs = (timing or {}).get("runs") or []
    if not runs:
        return "Plan against actual: no suite summary was found."
    parts = []
    for n, run in enumerate(runs, 1):
        est, act = run["estimate_wall_s"], run["wall_s"]
        if est and act:
            off = 100 * (act / est - 1)
            parts.append(f"run {n} ({run['studies']} studies): planned {est / 3600:.2f} h, "
                         f"took {act / 3600:.2f} h ({off:+.0f}% of the plan)")  # fmt: skip
        elif act:
            parts.append(f"run {n}: took {act / 3600:.2f} h (no estimate: costs unknown)")
    return "Plan against actual: " + "; ".join(parts) + "."


def main_tex(suite: SuiteSpec, found, doc: Document, layout: str, meta: dict) -> str:
    e = latex_escape
    wide = "figure*" if layout == "twocolumn" else "figure"
    width = r"\textwidth" if layout == "twocolumn" else r"\linewidth"
    option = "10pt,twocolumn" if layout == "twocolumn" else "10pt"
    commits = ", ".join(c[:10] for c in meta["code_commits"]) or "unknown"
    lines = [
        rf"\documentclass[{option}]{{article}}",
        r"\input{tables/preamble}",
        r"\usepackage{hyperref}",
        rf"\title{{Suite \texttt{{{e(suite.name)}}}: main results and ablations}}",
        r"\author{Generated by \texttt{dhkd suite report} from MLflow}",
        rf"\date{{{e(meta['generated'][:10])}}}",
        r"\begin{document}",
        r"\maketitle",
        r"\section{Setup}",
        e(suite.description.strip().rstrip(".") + ". Units:")
        + " "
        + e(_units_text(suite, found))
        + ", preset "
        + rf"\texttt{{{e(suite.preset or 'per study')}}}. Selection protocol of every column and "
        + "row: "
        + e(_protocol(found))
        + ". "
        + e(_timing_text(meta["plan_vs_actual"]))
        + rf" The runs ran at commit(s) \texttt{{{e(commits)}}}.",
        "",
    ]
    if doc.main:
        refs = ", ".join(rf"\ref{{{label(t)}}}" for t in doc.main.values())
        lines += [
            r"\section{Main results}",
            rf"Tables {refs}: per category and mean, the methods of study "
            rf"\texttt{{{e(doc.comparison)}}} beside the kNN reference and the published "
            r"columns where the papers state them.",
            "",
        ]
        lines += [rf"\input{{tables/main_{m}}}" for m in METRICS]
    if doc.ablations:
        lines += [
            r"\section{Ablations}",
            "One table per question; the default row is the baseline of each paired test.",
            "",
        ]
        for ablation in doc.ablations:
            lines.append(rf"\input{{tables/ablation_{ablation.study}}}")
            lines += [e(" ".join(findings(ablation))), ""]
            held = doc.held_out.get(ablation.study)
            if held is not None:
                lines += [rf"\input{{tables/{held.stem}}}", e(held.summary()), ""]
    if "sensitivity" in doc.figures:
        lines += [
            r"\section{Sensitivity}",
            r"Figure~\ref{fig:sensitivity}: the ablation rows of every numeric parameter "
            r"per category, the same trials as the ablation tables.",
            rf"\begin{{{wide}}}[t]",
            r"\centering",
            rf"\includegraphics[width={width}]{{figures/sensitivity.png}}",
            r"\caption{Each test metric's change from the default setting (points) against each "
            r"numeric ablation parameter, the settings evenly spaced: a thin line per category, "
            r"the mean over categories thick (error bars: std over seeds), the default dotted.}",
            r"\label{fig:sensitivity}",
            rf"\end{{{wide}}}",
            "",
        ]
    if "qualitative" in doc.figures:
        lines += [
            r"\section{Qualitative results}",
            r"Figure~\ref{fig:qualitative}: the main table's runs on one test image per "
            r"category.",
            rf"\begin{{{wide}}}[t]",
            r"\centering",
            rf"\includegraphics[width={width},height=0.8\textheight,keepaspectratio]"
            r"{figures/qualitative.png}",
            r"\caption{Anomaly maps across categories and methods: per category the first "
            r"defective test image (fixed in advance, never chosen by score), its ground "
            r"truth, and each method's map.}",
            r"\label{fig:qualitative}",
            rf"\end{{{wide}}}",
            "",
        ]
    lines += [r"\clearpage", r"\appendix", r"\section{Notes to the tables}"]
    lines += [rf"\input{{tables/main_{m}_notes}}" for m in doc.main]
    lines += [rf"\input{{tables/ablation_{a.study}_notes}}" for a in doc.ablations]
    if doc.notes:
        lines += [r"\paragraph{Notes to the document.}", r"\begin{itemize}"]
        lines += [rf"\item {e(portable_text(n))}" for n in doc.notes]
        lines += [r"\end{itemize}"]
    lines += [r"\end{document}", ""]
    return "\n".join(lines)


def compile_pdf(out: Path) -> dict[str, Any]:
    """main.tex -> main.pdf with pdflatex (twice, for the references); the auxiliary files are
    removed. {"compiled", "errors", "overfull"}; not compiled when pdflatex is missing."""
    if shutil.which("pdflatex") is None:
        return {
            "compiled": False,
            "errors": ["pdflatex not found (Debian: texlive-latex-base texlive-latex-recommended)"],
            "overfull": [],
        }
    cmd = ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "main.tex"]
    log = ""
    try:
        for _ in range(2):
            proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True, timeout=300)
            log_file = out / "main.log"
            log = log_file.read_text(errors="replace") if log_file.is_file() else proc.stdout
            if proc.returncode != 0:
                break
    except subprocess.TimeoutExpired:
        return {"compiled": False, "errors": ["pdflatex ran longer than 300 s"], "overfull": []}
    finally:
        for suffix in (".aux", ".log", ".out", ".toc"):
            (out / f"main{suffix}").unlink(missing_ok=True)
    errors, overfull = log_findings(log)
    if proc.returncode != 0 and not errors:
        errors.append(f"pdflatex exited with status {proc.returncode}")
    return {
        "compiled": (out / "main.pdf").is_file() and not errors,
        "errors": errors,
        "overfull": overfull,
    }


def readme(suite: SuiteSpec, found, doc: Document, meta: dict) -> str:
    lines = [f"# Suite `{suite.name}`: main results and ablations", ""]
    lines += [suite.description.strip(), ""]
    lines += [
        f"- Units: {_units_text(suite, found)}; preset `{suite.preset or 'per study'}`.",
        f"- Selection protocol: {_protocol(found)}.",
        f"- {_timing_text(meta['plan_vs_actual'])}",
        f"- Code: the runs ran at commit(s) {', '.join(meta['code_commits']) or 'unknown'}.",
        "- Every number: [provenance.csv](provenance.csv) names its study, MLflow run and "
        "metric key. LaTeX: [main.tex](main.tex)"
        + (", [main.pdf](main.pdf)." if (doc.out / "main.pdf").is_file() else "."),
        f"- Regenerate: `{meta['command'] or 'dhkd suite report ' + suite.source}` "
        "(from the folder the suite ran in, with its tracking store).",
        "",
    ]
    latex = doc.latex
    if latex and (latex.get("errors") or latex.get("overfull")):
        lines += ["**LaTeX:** " + "; ".join([*latex["errors"], *latex["overfull"]]), ""]
    if doc.main:
        lines += [
            "## Main results",
            "",
            f"Study `{doc.comparison}`: each method at its defaults, the kNN reference, "
            "and the published columns (†, MVTec AD at each paper's settings).",
            "",
        ]
        for table in doc.main.values():
            lines += [to_markdown(table), ""]
    if doc.ablations:
        lines += [
            "## Ablations",
            "",
            "Test metrics averaged over the categories (%); in brackets the difference "
            "to the default row in points, * where the paired test (Holm) gives p < 0.05; "
            "the last column is the validation objective that chose each row's trial.",
            "",
        ]
        for ablation in doc.ablations:
            stem = f"ablation_{ablation.study}"
            lines += [f"### {ablation.question} (`{ablation.study}`)", "", R.to_markdown(ablation)]
            lines += [f"- {line}" for line in findings(ablation)]
            lines += [f"- Notes and tests: [tables/{stem}_notes.md](tables/{stem}_notes.md)", ""]
            held = doc.held_out.get(ablation.study)
            if held is not None:
                table = loo_markdown(held.result, held.labels, held.baseline, title="")
                lines += [held.summary(), "", table, ""]
    for name, title in (("sensitivity", "Sensitivity"), ("qualitative", "Qualitative results")):
        if name in doc.figures:
            lines += [f"## {title}", "", f"![{name}](figures/{name}.png)", ""]
    if doc.notes:
        lines += ["## Notes", ""] + [f"- {portable_text(n)}" for n in doc.notes] + [""]
    return "\n".join(lines)
