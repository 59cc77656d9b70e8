"""Every `dhkd` command in the README, docs/ and the method READMEs parses with the real command
line (the README's set-up commands themselves are what .ci/run runs)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from dhkd.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "dhkd" / "methods").glob("*/README.md")),
    ROOT / "reports" / "README.md",
]


SHELL_BLOCKS = ("", "bash", "sh", "console")  # fenced blocks whose lines are commands


def _shell_lines() -> list[tuple[str, str]]:
    """(doc, line) of the shell code blocks (```bash, ```sh, ```console or a bare fence; not
    ```yaml and the like), with backslash continuations joined."""
    found = []
    for doc in DOCS:
        if not doc.is_file():
            continue
        name = str(doc.relative_to(ROOT))
        fences = re.findall(r"^```([A-Za-z]*)\n(.*?)^```", doc.read_text(), re.S | re.M)
        for lang, block in fences:
            if lang in SHELL_BLOCKS:
                found += [(name, line) for line in block.replace("\\\n", " ").splitlines()]
    return found


def _commands() -> list[tuple[str, str]]:
    """`dhkd ...` commands of the shell blocks."""
    return [
        (name, match.group(1).strip())
        for name, line in _shell_lines()
        for match in re.finditer(r"\bdhkd ([a-z][^|&;#]*)", line)
    ]


COMMANDS = _commands()
SCRIPTS = [
    (name, match.group(1))
    for name, line in _shell_lines()
    for match in re.finditer(r"\bpython3? ((?:tests|benchmarks)/\S+\.py)", line)
]


def test_readme_opens_with_the_two_setup_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert len(block) == 2
    assert block[0].endswith("dhkd study run studies/quickstart.yaml")
    assert block[1].endswith("python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert block[1] in ci


def test_readme_stays_a_front_door():
    """README.md is the entry page (at most 150 lines); details belong in docs/."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: move details into docs/"


@pytest.mark.parametrize("doc,command", COMMANDS, ids=[f"{d}:{c}" for d, c in COMMANDS])
def test_documented_command_parses(doc, command):
    argv = shlex.split(command)
    if any("<" in a or "..." in a for a in argv):
        pytest.skip(f"template with placeholders: {command}")
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # --help exits 0; a wrong flag exits 2
        assert exc.code == 0, f"{doc}: `dhkd {command}` does not parse"
    for spec in (a for a in argv if a.startswith("studies/") and a.endswith(".yaml")):
        assert (ROOT / spec).is_file(), f"{doc}: `dhkd {command}` names {spec}, which is not there"


def test_commands_found_in_every_doc_that_has_them():
    """The block parser sees the commands of the pages that document them (a fence it misread
    would silently drop a page's commands)."""
    docs = {doc for doc, _ in COMMANDS}
    for page in ("README.md", "docs/running.md", "docs/studies.md", "docs/config.md"):
        if (ROOT / page).is_file():
            assert page in docs, f"no dhkd command found in {page}'s shell blocks"


@pytest.mark.parametrize("doc,script", SCRIPTS, ids=[f"{d}:{s}" for d, s in SCRIPTS])
def test_documented_script_exists(doc, script):
    """A `python tests/...py` or `python benchmarks/...py` line names a file in the repository."""
    assert (ROOT / script).is_file(), f"{doc}: {script} does not exist"


def test_help_runs_as_a_program():
    out = subprocess.run([sys.executable, "-m", "dhkd", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for sub in ("train", "study", "report", "ui", "data", "synth", "cluster"):
        assert sub in out.stdout
