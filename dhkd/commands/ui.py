"""`dhkd ui`: the MLflow UI for the studies' tracking store, on 127.0.0.1 by default."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ui",
        help="browse studies in the MLflow UI (http://127.0.0.1:5000)",
        description="Start `mlflow ui` on the tracking store the studies write to. It listens "
        "on 127.0.0.1 only, unless --host says otherwise (e.g. 0.0.0.0 exposes it to the "
        "network: do that only behind a firewall or an authenticating proxy).",
    )
    p.add_argument("--tracking-uri", default=None, help="default: sqlite:///runs/mlflow.db")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (127.0.0.1)")
    p.add_argument("--workers", type=int, default=1, help="server processes (1 is plenty)")
    p.set_defaults(func=run)


def ui_command(uri: str, host: str, port: int, workers: int = 1) -> list[str]:
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
            "--host", host, "--port", str(port), "--workers", str(workers)]  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dhkd.errors import DhkdError
    from dhkd.study.runner import DEFAULT_TRACKING
    from dhkd.study.tracking import normalize_uri

    uri = args.tracking_uri or DEFAULT_TRACKING
    if uri.startswith("sqlite:///"):
        if not Path(uri.removeprefix("sqlite:///")).expanduser().is_file():
            raise DhkdError(
                f"no tracking store at {uri}: run a study first, or pass --tracking-uri"
            )
        uri = normalize_uri(uri)
    print(f"MLflow UI for {uri} at http://{args.host}:{args.port} (Ctrl+C to stop)", flush=True)
    # The server runs in its own process group so that stopping `dhkd ui` (Ctrl+C or SIGTERM)
    # stops all of its worker processes too.
    proc = subprocess.Popen(ui_command(uri, args.host, args.port, args.workers),
                            start_new_session=True)  # fmt: skip
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_group(proc)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _stop_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=15)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
