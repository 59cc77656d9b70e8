"""A generated report names no machine-specific absolute path (it is meant to be committed)."""

from __future__ import annotations

import re
from pathlib import Path

from dhkd.report import build_report
from dhkd.report.paths import portable_text

ABSOLUTE_ROOTS = re.compile(r"(?<![\w.])/(?:tmp|work|home|root|Users|var|private|mnt)/")


def test_portable_text_relativises_below_the_base_and_elides_elsewhere(tmp_path):
    base = tmp_path / "repo"
    base.mkdir()
    text = (
        f"dhkd report q --out {base}/reports/q --tracking-uri sqlite:///{base}/runs/mlflow.db "
        f"--storage-path /elsewhere/ray/x (from `/home/someone/optuna.db`) file:///srv/a/m.png"
    )
    assert portable_text(text, base) == (
        "dhkd report q --out reports/q --tracking-uri sqlite:///runs/mlflow.db "
        "--storage-path …/x (from `…/optuna.db`) file://…/m.png"
    )


def test_portable_text_keeps_relative_paths_urls_and_ratios(tmp_path):
    text = "sqlite:///runs/mlflow.db http://127.0.0.1:5000/a/b 0.98 / 0.97 img/s tables/x.md"
    assert portable_text(text, tmp_path) == text


def test_generated_report_has_no_absolute_paths(fake_study, tmp_path):
    uri, name, _ = fake_study
    out = tmp_path / "out"
    command = f"dhkd report {name} --tracking-uri {uri} --out {out} --storage-path {tmp_path}/ray"
    assert ABSOLUTE_ROOTS.search(command)  # what the report must not repeat
    build_report(name, uri, out, log_artifacts=False, storage_path=tmp_path / "ray",
                 command=command)  # fmt: skip
    texts = [p for p in Path(out).rglob("*") if p.suffix in (".md", ".json", ".csv", ".tex")]
    assert out / "README.md" in texts and out / "report.json" in texts
    for path in texts:
        found = ABSOLUTE_ROOTS.findall(path.read_text())
        assert not found, f"{path.relative_to(out)} names {found}"
        assert str(tmp_path) not in path.read_text()
    readme = (out / "README.md").read_text()
    assert "--tracking-uri sqlite:///…/mlflow.db" in readme
    assert "paths are relative to the folder the report was made from" in readme
