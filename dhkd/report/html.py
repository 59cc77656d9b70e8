"""README.html: the report as one self-contained page, readable in MLflow's artifact viewer.

MLflow shows an HTML artifact in a sandboxed iframe loaded from a blob: URL, where a relative
link or image path cannot resolve. So the page holds everything it shows: figures as base64
PNGs, tables as HTML, and every text file the Markdown README links to (table CSVs as HTML
tables, Markdown notes, LaTeX sources, provenance) in a "Files" section that its links jump to.
PDFs are named, not linked (they sit beside the page in the artifact tree). The page is made
from README.md by a converter of the Markdown subset readme.py writes: headings, paragraphs,
nested lists, pipe tables, code fences, images, `code`, **bold** and [links](target).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import re
from pathlib import Path

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;
line-height:1.45;color:#1f2328}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #d0d7de;padding:3px 8px}
th{background:#f6f8fa}td{text-align:right}td:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee}pre{background:#f6f8fa;padding:.6em;overflow:auto}
code{background:#f6f8fa;padding:0 3px}details{margin:.4em 0;overflow-x:auto}summary{cursor:pointer}
.file{font-family:monospace}
"""
TEXT_FILES = (".csv", ".md", ".tex", ".json", ".txt", ".yaml")
IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`]+)`")
BOLD = re.compile(r"\*\*(.+?)\*\*")
TABLE_RULE = re.compile(r"^\|\s*:?-")  # a pipe table's second line: |:--|, |---|


def anchor(path: str) -> str:
    return "file-" + re.sub(r"[^A-Za-z0-9]+", "-", path).strip("-")


class Page:
    """Converts the README's Markdown, collecting the files its links point to."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: list[str] = []  # text files linked from the page, in order of first link

    # -- inline ----------------------------------------------------------------------------
    def _target(self, text: str, target: str) -> str:
        if re.match(r"^[a-z]+://", target):
            return f'<a href="{html.escape(target)}">{text}</a>'
        path = self.folder / target
        if path.suffix in TEXT_FILES and path.is_file():
            if target not in self.files:
                self.files.append(target)
            return f'<a href="#{anchor(target)}">{text}</a>'
        return f'{text} (<span class="file">{html.escape(target)}</span>, beside this page)'

    def _image(self, alt: str, target: str) -> str:
        path = self.folder / target
        if not path.is_file() or path.suffix != ".png":
            return f"[missing figure {html.escape(target)}]"
        data = base64.b64encode(path.read_bytes()).decode()
        return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'

    def inline(self, text: str) -> str:
        codes: list[str] = []

        def keep(match: re.Match) -> str:
            codes.append(f"<code>{html.escape(match[1])}</code>")
            return f"\x00{len(codes) - 1}\x00"

        out = html.escape(CODE.sub(keep, text), quote=False)
        out = IMAGE.sub(lambda m: self._image(m[1], m[2]), out)
        out = LINK.sub(lambda m: self._target(m[1], html.unescape(m[2])), out)
        out = BOLD.sub(r"<strong>\1</strong>", out)
        return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m[1])], out)

    # -- blocks ----------------------------------------------------------------------------
    def _table(self, rows: list[str]) -> str:
        def cells(line: str) -> list[str]:
            return [c.strip() for c in line.strip().strip("|").split("|")]

        head = "".join(f"<th>{self.inline(c)}</th>" for c in cells(rows[0]))
        body = "".join(
            "<tr>" + "".join(f"<td>{self.inline(c)}</td>" for c in cells(r)) + "</tr>"
            for r in rows[2:]
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def _list(self, items: list[str]) -> str:
        out, depth = [], 0
        for line in items:
            level = 1 + (len(line) - len(line.lstrip(" "))) // 2
            while depth < level:
                out.append("<ul>")
                depth += 1
            while depth > level:
                out.append("</ul>")
                depth -= 1
            out.append(f"<li>{self.inline(line.strip()[2:])}</li>")
        return "".join(out) + "</ul>" * depth

    def convert(self, text: str) -> str:
        lines, out, i = text.splitlines(), [], 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("```"):
                end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")),
                           len(lines))  # fmt: skip
                code = html.escape("\n".join(lines[i + 1 : end]))
                out.append(f"<pre><code>{code}</code></pre>")
                i = end + 1
            elif m := re.match(r"^(#{1,6}) (.*)", line):
                level = len(m[1])
                slug = re.sub(r"[^a-z0-9]+", "-", m[2].lower()).strip("-")
                out.append(f'<h{level} id="{slug}">{self.inline(m[2])}</h{level}>')
                i += 1
            elif line.startswith("|") and i + 1 < len(lines) and TABLE_RULE.match(lines[i + 1]):
                end = next((j for j in range(i, len(lines)) if not lines[j].startswith("|")),
                           len(lines))  # fmt: skip
                out.append(self._table(lines[i:end]))
                i = end
            elif re.match(r"^ *- ", line):
                end = next((j for j in range(i, len(lines)) if not re.match(r"^ *- ", lines[j])),
                           len(lines))  # fmt: skip
                out.append(self._list(lines[i:end]))
                i = end
            elif not line.strip():
                i += 1
            else:
                end = next((j for j in range(i + 1, len(lines)) if not lines[j].strip()
                            or re.match(r"^(#|\||```| *- )", lines[j])), len(lines))  # fmt: skip
                out.append(f"<p>{self.inline(' '.join(lines[i:end]))}</p>")
                i = end
        return "\n".join(out)

    # -- the linked files ------------------------------------------------------------------
    def _file_body(self, rel: str) -> str:
        path = self.folder / rel
        text = path.read_text()
        if path.suffix == ".csv":
            rows = list(csv.reader(io.StringIO(text)))
            if not rows:
                return "<p>(empty)</p>"
            head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                for r in rows[1:]
            )
            return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        if path.suffix == ".md":
            return self.convert(text)
        return f"<pre>{html.escape(text)}</pre>"

    def files_section(self) -> str:
        out, done = ['<h2 id="files">Files</h2>'], 0
        while done < len(self.files):  # a linked Markdown file may link further files
            rel = self.files[done]
            done += 1
            body = self._file_body(rel)
            out.append(f'<details id="{anchor(rel)}" open><summary class="file">'
                       f"{html.escape(rel)}</summary>{body}</details>")  # fmt: skip
        return "\n".join(out)


def write_html(folder: Path, title: str) -> Path:
    """README.html beside README.md in the report folder `folder`."""
    page = Page(folder)
    body = page.convert((folder / "README.md").read_text())
    files = page.files_section() if page.files else ""
    doc = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body>\n{body}\n{files}\n</body></html>\n"
    )
    out = folder / "README.html"
    out.write_text(doc)
    return out
