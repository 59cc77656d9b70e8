"""The browser check (tests/tools/browser_check.py) on the session's quickstart smoke study and
its logged report (tests/conftest.py, so the check runs no study of its own): `dhkd ui`
opens on the study's runs, the descriptions name the best trial and how each trial ended, and
the HTML report shows every figure with no dead link. Needs Debian's chromium; skips without."""

from __future__ import annotations

import pytest
from tools.browser_check import find_chromium, main

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        find_chromium() is None,
        reason="no chromium: install Debian's (apt-get install chromium) to run the browser check",
    ),
]


def test_a_study_reads_right_in_the_mlflow_ui(quickstart_report, tmp_path, capsys):
    study = quickstart_report[0].copy(tmp_path / "qs")  # `dhkd ui` gets a store of its own
    shots = tmp_path / "screenshots"
    args = ["--out", str(shots), "--tracking-uri", study.uri, "--study", study.name]
    assert main(args) == 0, capsys.readouterr().err
    names = sorted(p.name for p in shots.glob("*.png"))
    assert names == ["1-runs.png", "2-study-run.png", "3-trial-run.png",
                     "4-report-in-mlflow.png", "5-report.png"]  # fmt: skip
    assert all((shots / n).stat().st_size > 20_000 for n in names)  # pages, not blanks
    out = capsys.readouterr().out
    assert "description names the best trial" in out and "all fine" in out
