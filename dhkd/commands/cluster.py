"""`dhkd cluster check`: preflight a Ray cluster config (and tracking/storage) before `ray up`."""

from __future__ import annotations

import argparse


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} is negative; give 0 or more seconds")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cluster",
        help="Ray cluster helpers (offline preflight of cluster.yaml)",
        description="Ray cluster helpers. See docs/cluster.md.",
    )
    sub = parser.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    check = sub.add_parser(
        "check",
        help="check cluster.yaml offline (exit 0: fine, 2: problems)",
        description=(
            "Validate a Ray cluster config against Ray's JSON schema and Ray's own config "
            "checks (no cloud calls, no credentials), then the project's checks: integer "
            "resources, head node type, worker counts, an MLflow server bound to a private "
            "address, dhkd installed by setup, no secrets. Optionally check that the tracking "
            "server answers and that the storage path is writable. Exit 0 when there is no "
            "error, 2 otherwise."
        ),
    )
    check.add_argument(
        "config", nargs="?", default="cluster.yaml", help="cluster config (default: cluster.yaml)"
    )
    check.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI to probe (http(s)://, sqlite:///, postgresql://)",
    )
    check.add_argument(
        "--storage-path",
        help="Ray Tune storage path to probe (local dir: write test; s3:// etc.: warning only)",
    )
    check.add_argument(
        "--timeout", type=_non_negative, default=3.0, help="seconds to wait for the tracking server"
    )
    check.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    from dhkd.cluster import check_cluster

    report = check_cluster(args.config, args.tracking_uri, args.storage_path, args.timeout)
    print(report.render())
    return report.exit_code
