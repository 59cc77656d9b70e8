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
        description="Start `mlflow ui` on the tracking store the studies write to and print "
        "the URL of each study's runs page (the study run and its trials, with their state, "
        "objective and parameters). It listens on 127.0.0.1 only, unless --host says "
        "otherwise (e.g. 0.0.0.0 exposes it to the network: do that only behind a firewall "
        "or an authenticating proxy).",
    )
    p.add_argument("--tracking-uri", default=None, help="default: sqlite:///runs/mlflow.db")
    p.add_argument("--port", type=port_number, default=5000, help="1-65535 (5000)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (127.0.0.1)")
    p.add_argument("--workers", type=int, default=1, help="server processes (1 is plenty)")
    p.add_argument(
        "--study",
        default=None,
        help="print only this study's runs page (the URL opens its runs table)",
    )
    p.add_argument(
        "--open",
        action="store_true",
        help="open the study's runs page (or the UI) in the default web browser",
    )
    p.set_defaults(func=run)


def port_number(text: str) -> int:
    """--port: an integer from 1 to 65535 (an argparse one-line error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (1-65535)")
    return value


def check_port_free(host: str, port: int) -> None:
    """A DhkdError when `port` on `host` cannot be listened on (another server holds it)."""
    import socket

    from dhkd.errors import DhkdError

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise DhkdError(
                f"cannot serve on {host}:{port} ({exc.strerror}): another server holds the "
                f"port (`ss -ltnp 'sport = :{port}'` names it); stop it, or pass --port with a "
                "free port"
            ) from None


def study_pages(uri: str, base: str, only: str | None = None) -> list[tuple[str, str]]:
    """(study name, URL of its runs page) for each study in the store, or for `only` (a
    DhkdError naming the known studies when there is no such study)."""
    from mlflow.tracking import MlflowClient

    from dhkd.errors import DhkdError
    from dhkd.study.tracking.presentation import runs_route

    experiments = [e for e in MlflowClient(uri).search_experiments() if "dhkd.study" in e.tags]
    pages = sorted((e.name, f"{base}/{runs_route(e.experiment_id)}") for e in experiments)
    if only is None:
        return pages
    chosen = [page for page in pages if page[0] == only]
    if not chosen:
        known = ", ".join(name for name, _ in pages) or "none yet"
        raise DhkdError(f"no study named '{only}' at {uri}; studies there: {known}")
    return chosen


def ui_command(uri: str, host: str, port: int, workers: int = 1) -> list[str]:
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
            "--host", host, "--port", str(port), "--workers", str(workers)]  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dhkd.errors import DhkdError
    from dhkd.runs.tracking import DEFAULT_TRACKING_URI, check_sqlite

    uri = args.tracking_uri or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///")).expanduser().resolve()
        if not path.is_file():
            raise DhkdError(
                f"no tracking store at {uri}: run a study first, or pass --tracking-uri"
            )
        check_sqlite(path, create=False)  # a text file is one line, not a traceback
        uri = f"sqlite:///{path}"
    base = f"http://{args.host}:{args.port}"
    check_port_free(args.host, args.port)
    pages = study_pages(uri, base, args.study)
    # The server runs in its own process group so that stopping `dhkd ui` (Ctrl+C or SIGTERM)
    # stops all of its worker processes too.
    proc = subprocess.Popen(ui_command(uri, args.host, args.port, args.workers),
                            start_new_session=True)  # fmt: skip
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if not _wait_until_up(proc, base):
            raise DhkdError(
                f"the MLflow UI did not start on {base} (exit code {proc.poll()}); see its "
                "messages above"
            )
        print(f"MLflow UI for {uri} at {base} (Ctrl+C to stop)", flush=True)
        for name, url in pages:
            print(f"  study {name}: {url}", flush=True)
        if args.open:
            _open(pages[0][1] if len(pages) == 1 else base)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_group(proc)


def _wait_until_up(proc: subprocess.Popen, base: str, wait_s: float = 120.0) -> bool:
    """Whether the server answers within `wait_s` (False as soon as it exits)."""
    import time
    import urllib.request

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return False


def _open(url: str) -> None:
    import webbrowser

    if not webbrowser.open(url):
        print(f"no web browser to open here; open {url}", flush=True)


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
