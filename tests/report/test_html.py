"""README.html's Markdown converter on what the report and suite writers emit."""

from pathlib import Path

from dhkd.report.html import Page


def test_tables_with_either_rule_line_become_tables(tmp_path: Path) -> None:
    text = "| a | b |\n|:--|--:|\n| 1 | 2 |\n\n| c | d |\n|---|---|\n| 3 | 4 |\n"
    out = Page(tmp_path).convert(text)
    assert out.count("<table>") == 2
    assert "<td>3</td><td>4</td>" in out


def test_a_line_that_starts_a_block_but_is_not_one_is_a_paragraph(tmp_path: Path) -> None:
    """A lone pipe line (no rule under it) used to leave the converter looping forever."""
    out = Page(tmp_path).convert("| not a table\nnext line\n\nend\n")
    assert out == "<p>| not a table next line</p>\n<p>end</p>"
