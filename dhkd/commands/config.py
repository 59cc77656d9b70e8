"""`dhkd config show`: the resolved configuration a run would use, as YAML."""

from __future__ import annotations

import argparse

from dhkd.commands.train import add_config_arguments, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "config",
        help="show the resolved configuration of a run",
        description="Inspect the configuration `dhkd train` resolves from its arguments.",
    )
    sub = parser.add_subparsers(dest="config_command", required=True, metavar="CONFIG_COMMAND")
    show = sub.add_parser(
        "show",
        help="print the configuration a run would use (YAML)",
        description="Print the configuration `dhkd train` would run with these arguments: the "
        "preset (its shared values and the method's), then --config, then --set and its "
        "shortcuts, validated as a run validates it; the same YAML as the run folder's "
        "config.yaml.",
    )
    add_config_arguments(show)
    show.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    from dhkd.config import config_yaml

    print(config_yaml(config_from_args(args)), end="")
    return 0
