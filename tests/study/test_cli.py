"""`dhkd study check` and `dhkd ui` (bound to 127.0.0.1 unless --host says otherwise)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dhkd.cli import main
from dhkd.commands.ui import ui_command
from dhkd.errors import DhkdError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_study_check_lists_every_spec(capsys):
    """Every spec is valid; one whose data is not on this machine (the paper studies read all of
    MVTec AD) is refused by the data check, which names what is missing."""
    specs = sorted(str(p) for p in (REPO / "studies").rglob("*.yaml") if "suites" not in p.parts)
    for spec in specs:
        rc = main(["study", "check", "--smoke-test", spec])
        out, err = capsys.readouterr()
        if rc == 0:
            assert f"{spec}: ok - " in out
        else:
            assert rc == 2 and "Traceback" not in err, err
            assert re.search(r"category-missing|does not exist|none of the data roots", err), err
    assert main(["study", "check", str(REPO / "studies" / "quickstart.yaml")]) == 0
    suite = str(REPO / "studies" / "suites" / "local.yaml")
    assert main(["study", "check", suite]) == 2
    assert "is a suite (it lists `studies:`)" in capsys.readouterr().err


def test_study_run_with_a_bad_spec_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\ndescription: x\ndata: {root: /x, categories: [bottle]}\nsampler: {kind: tpe}\n"
    )
    assert main(["study", "run", str(bad)]) == 2
    assert "unknown key 'sampler.kind'" in capsys.readouterr().err


def test_ui_binds_localhost_by_default():
    cmd = ui_command("sqlite:////x/mlflow.db", "127.0.0.1", 5000)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    from dhkd.cli import build_parser

    assert build_parser().parse_args(["ui"]).host == "127.0.0.1"


def test_ui_prints_each_study_runs_page(tracking_uri):
    from mlflow.tracking import MlflowClient

    from dhkd.commands.ui import study_pages

    client = MlflowClient(tracking_uri)
    exp = client.create_experiment("noise", tags={"dhkd.study": "noise"})
    client.create_experiment("other")  # not a study: not listed
    base = "http://127.0.0.1:5000"
    route = f"#/experiments/{exp}/runs?workflowType=machine_learning&viewStateShareKey=dhkd-runs"
    assert study_pages(tracking_uri, base) == [("noise", f"{base}/{route}")]
    assert study_pages(tracking_uri, base, "noise") == [("noise", f"{base}/{route}")]
    with pytest.raises(DhkdError, match=r"no study named 'nois' .* studies there: noise"):
        study_pages(tracking_uri, base, "nois")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ui_serves_the_tracking_store(tmp_path, mlflow_template):
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    port = _free_port()
    cmd = [sys.executable, "-m", "dhkd", "ui", "--tracking-uri",
           f"sqlite:///{tmp_path / 'mlflow.db'}", "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
                time.sleep(1)
        else:
            pytest.fail("mlflow ui did not answer within 90 s")
    finally:
        proc.terminate()  # `dhkd ui` stops the server's whole process group on SIGTERM
        proc.wait(timeout=30)
    left = subprocess.run(["pgrep", "-af", "--", f"--port {port}"], capture_output=True, text=True)
    assert left.returncode == 1, f"server processes left running: {left.stdout}"
