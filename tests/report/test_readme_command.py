"""reports/README.md's regeneration command uses only flags the CLI defines (the slow smoke-study
test runs the same two commands on the smoke version of the study)."""

from __future__ import annotations

import shlex
from pathlib import Path

from dhkd.cli import build_parser

README = Path(__file__).resolve().parents[2] / "reports" / "README.md"


def test_regeneration_command_parses():
    text = README.read_text()
    block = text.split("```")[1].strip()
    commands = [shlex.split(part) for part in block.split("&&")]
    assert [c[:2] for c in commands] == [["dhkd", "study"], ["dhkd", "report"]]
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv[1:])  # exits (fails the test) on an unknown flag
        assert callable(args.func)
    assert parser.parse_args(commands[1][1:]).study == "quickstart"
