"""The `dhkd` command line: thin subcommands that parse, load a config and call one function."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from dhkd import __version__, commands
from dhkd.errors import DhkdError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dhkd",
        description="Train anomaly-detection methods (DHKD, bidirectional KD, a kNN reference), "
        "run studies and build reports.",
    )
    parser.add_argument("--version", action="version", version=f"dhkd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"dhkd.commands.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DhkdError as exc:
        print(f"dhkd {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dhkd {args.command}: interrupted", file=sys.stderr)
        return 130
