r"""Compile every generated LaTeX table in a one-column and a two-column paper.

    python -m dhkd.report.latex_check DIR [--out PNGDIR]

Every .tex file under DIR (preamble.tex aside: it is the preamble; a whole document such as a
suite's main.tex aside too) is put between paragraphs of filler text in a plain `article` (10pt,
one column) and a plain `article` (10pt, twocolumn), with the preamble.tex of its folder (or,
where there is none, dhkd's own, latex.PREAMBLE), and built with pdflatex. A file fails on a
LaTeX error or an overfull box; the exit status is 1 when any fails. With --out every page of
every document is rendered to PNG (pdftoppm) to look at.

Needs pdflatex (Debian: texlive-latex-base and texlive-latex-recommended) and, for --out,
pdftoppm (poppler-utils).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from dhkd.report.latex import PREAMBLE

DOCUMENTS = {"onecolumn": "10pt", "twocolumn": "10pt,twocolumn"}  # article class options
FILLER = (
    "Filler text of a paper around the table shows where the table sits on the page and "
    "whether it stays inside its column and leaves the neighbouring one alone. "
) * 6
OVERFULL = re.compile(r"^Overfull \\([hv])box \((\d+(?:\.\d+)?)pt too (wide|high)\)", re.M)
INSTALL = {
    "pdflatex": "texlive-latex-base and texlive-latex-recommended",
    "pdftoppm": "poppler-utils",
}


@dataclass
class Result:
    tex: Path
    layout: str
    errors: list[str] = field(default_factory=list)
    overfull: list[str] = field(default_factory=list)  # e.g. "\hbox 130.2pt too wide"
    pngs: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.overfull

    def text(self) -> str:
        state = "ok" if self.ok else "FAIL " + "; ".join([*self.errors, *self.overfull])
        return f"{self.tex} [{self.layout}]: {state}"


def document(layout: str) -> str:
    return "\n".join(
        [
            rf"\documentclass[{DOCUMENTS[layout]}]{{article}}",
            r"\input{preamble}",
            r"\begin{document}",
            FILLER,
            "",
            r"\input{table}",
            "",
            *([FILLER, ""] * 3),
            r"\end{document}",
            "",
        ]
    )


def missing_tools(png: bool = False) -> list[str]:
    """The programs this check needs that are not on PATH."""
    tools = ["pdflatex", *(["pdftoppm"] if png else [])]
    return [t for t in tools if shutil.which(t) is None]


def log_findings(log: str) -> tuple[list[str], list[str]]:
    """(errors, overfull boxes) of a pdflatex log."""
    errors = [line[2:].strip() for line in log.splitlines() if line.startswith("! ")]
    overfull = [f"\\{k}box {size}pt too {how}" for k, size, how in OVERFULL.findall(log)]
    return errors, overfull


def compile_one(
    tex: Path, layout: str, png_dir: Path | None = None, name: str | None = None
) -> Result:
    """Build `tex` in `layout` in a scratch folder; with png_dir, render its pages there as
    <name>-<layout>-<page>.png (name: the file's stem)."""
    result = Result(tex, layout)
    preamble = tex.parent / "preamble.tex"
    with tempfile.TemporaryDirectory(prefix="dhkd-latex-") as tmp:
        work = Path(tmp)
        shutil.copy(tex, work / "table.tex")
        text = preamble.read_text() if preamble.is_file() else PREAMBLE
        (work / "preamble.tex").write_text(text)
        (work / "doc.tex").write_text(document(layout))
        cmd = ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape"]
        try:
            proc = subprocess.run(
                [*cmd, "doc.tex"], cwd=work, capture_output=True, text=True, timeout=120
            )
        except subprocess.TimeoutExpired:
            result.errors.append("pdflatex ran longer than 120 s")
            return result
        log_file = work / "doc.log"
        log = log_file.read_text(errors="replace") if log_file.is_file() else proc.stdout
        result.errors, result.overfull = log_findings(log)
        if proc.returncode != 0 and not result.errors:
            result.errors.append(f"pdflatex exited with status {proc.returncode}")
        pdf = work / "doc.pdf"
        if png_dir is not None and pdf.is_file():
            png_dir.mkdir(parents=True, exist_ok=True)
            prefix = png_dir / f"{name or tex.stem}-{layout}"
            subprocess.run(
                ["pdftoppm", "-png", "-r", "150", str(pdf), str(prefix)], check=True, timeout=120
            )
            result.pngs = sorted(png_dir.glob(f"{prefix.name}-*.png"))
    return result


def tables_under(root: Path) -> list[Path]:
    """The table fragments under root: every .tex but the preambles and whole documents (a
    suite's main.tex, which `dhkd suite report` compiles as it is)."""
    return sorted(
        p
        for p in root.rglob("*.tex")
        if p.name != "preamble.tex" and "\\documentclass" not in p.read_text()
    )


def check(root: Path, png_dir: Path | None = None) -> list[Result]:
    """Compile every table under `root` (a folder or one .tex file) in both layouts."""
    missing = missing_tools(png=png_dir is not None)
    if missing:
        packages = " ".join(INSTALL[t] for t in missing).replace(" and ", " ")
        raise RuntimeError(
            f"{', '.join(missing)} not found: install {' and '.join(INSTALL[t] for t in missing)}"
            f" (Debian: apt-get install {packages})"
        )
    files = [root] if root.is_file() else tables_under(root)
    if not files:
        raise ValueError(f"no .tex file under {root}")
    if root.is_file():
        names = {root: root.stem}
    else:
        names = {tex: "-".join(tex.relative_to(root).with_suffix("").parts) for tex in files}
    return [compile_one(tex, layout, png_dir, names[tex]) for tex in files for layout in DOCUMENTS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dhkd.report.latex_check",
        description="Compile every .tex table under DIR in a one-column and a two-column "
        "article with pdflatex; fail on an error or an overfull box.",
    )
    parser.add_argument("dir", type=Path, help="a report folder (or its tables/), or one .tex")
    parser.add_argument("--out", type=Path, default=None, help="write PNG renderings here")
    args = parser.parse_args(argv)
    if not args.dir.exists():
        print(f"error: {args.dir} does not exist", file=sys.stderr)
        return 2
    try:
        results = check(args.dir, args.out)
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for result in results:
        print(result.text())
    failed = sum(not r.ok for r in results)
    pngs = sum(len(r.pngs) for r in results)
    print(
        f"{len(results) - failed}/{len(results)} builds ok"
        + (f"; {pngs} PNG pages in {args.out}" if args.out else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
