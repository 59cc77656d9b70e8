"""Every `dhkd` command in the README and docs parses with the real command line."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from dhkd.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "reports" / "README.md"]


def _commands() -> list[tuple[str, str]]:
    """`dhkd ...` lines of the fenced code blocks, with backslash continuations joined."""
    found = []
    for doc in DOCS:
        if not doc.is_file():
            continue
        name = str(doc.relative_to(ROOT))
        for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", doc.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                for match in re.finditer(r"\bdhkd ([a-z][^|&;#]*)", line):
                    found.append((name, match.group(1).strip()))
    return found


COMMANDS = _commands()


def test_readme_opens_with_the_two_setup_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert len(block) == 2
    assert block[0].endswith("dhkd study run studies/quickstart.yaml")
    assert block[1].endswith("python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert block[1] in ci


@pytest.mark.parametrize("doc,command", COMMANDS, ids=[f"{d}:{c}" for d, c in COMMANDS])
def test_documented_command_parses(doc, command):
    argv = shlex.split(command)
    if any("<" in a or "..." in a for a in argv):
        pytest.skip(f"template with placeholders: {command}")
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # --help exits 0; a wrong flag exits 2
        assert exc.code == 0, f"{doc}: `dhkd {command}` does not parse"


def test_help_runs_as_a_program():
    out = subprocess.run([sys.executable, "-m", "dhkd", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for sub in ("train", "study", "report", "ui", "data", "synth", "cluster"):
        assert sub in out.stdout
