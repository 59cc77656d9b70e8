"""benchmarks/bench_methods.py: one row per (category, method) with times, memory, the three
metrics and the stored threshold's measures, written to JSON and rendered as a Markdown table
(on the synthetic dataset with the tiny preset; the renderer on hand-made results)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from dhkd.report.loo import leave_one_out


def _load_bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_methods.py"
    spec = importlib.util.spec_from_file_location("bench_methods", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.slow
def test_methods_benchmark_side_by_side(synthetic_root, tmp_path, monkeypatch):
    bench = _load_bench()
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\n## bench_methods.py\n\nText.\n")
    monkeypatch.setattr(bench, "README", readme)
    out = tmp_path / "methods.json"
    argv = ["--preset", "tiny", "--data", str(synthetic_root), "--categories", "stripes",
            "--methods", "knn", "dhkd", "--features", "warm", "--out", str(out),
            "--runs-dir", str(tmp_path / "runs"), "--update-readme"]  # fmt: skip
    report = bench.main(argv)
    assert json.loads(out.read_text()) == report
    rows = report["results"]
    assert [(r["category"], r["method"]) for r in rows] == [("stripes", "knn"), ("stripes", "dhkd")]
    for row in rows:
        assert row["wall_s"] > 0 and row["cpu_s"] > 0 and row["peak_rss_mb"] > 0
        assert row["process_wall_s"] >= row["wall_s"]
        assert all(0 <= row[m] <= 1 for m in ("image_auroc", "pixel_auroc", "pixel_aupro"))
        assert 0 <= row["val_pixel_aupro"] <= 1 and row["selection"] == "synthetic"
        assert all(0 <= row[f"threshold_{m}"] <= 1 for m in ("precision", "recall", "fpr"))
        assert 0 < row["threshold_ba_ratio"] <= 1
        run = tmp_path / "runs" / f"{row['method']}-stripes"
        assert row["run_dir"] == str(run.resolve())
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["test/threshold_ba_ratio"] == row["threshold_ba_ratio"]
        assert (run / "config.yaml").is_file() and (run / "checkpoint.pt").is_file()
    table = out.with_suffix(".md").read_text()
    assert "| stripes |" in table and "DHKD − kNN (bound)" in table
    assert table.rstrip() in readme.read_text() and "Text.\n" in readme.read_text()


def _row(category, method, metrics, ba=0.9, load=1.0):
    image, pixel, pro = metrics
    return {"category": category, "method": method, "wall_s": 10.0, "cpu_s": 19.0,
            "peak_rss_mb": 1024.0, "image_auroc": image, "pixel_auroc": pixel,
            "pixel_aupro": pro, "threshold_ba_ratio": ba, "selection": "synthetic",
            "load_avg_1m_before": load, "load_avg_1m_after": load + 0.5}  # fmt: skip


META = {"python": "3.12", "cpu": "x86_64", "cpu_count": 2, "preset": "quick",
        "features": "cold", "date": "2026-01-01"}  # fmt: skip


def _report(with_pcb: bool) -> dict:
    rows = [
        _row("bottle", "dhkd", (0.996, 0.990, 0.900)),  # -0.4 / +0.0 / -0.6 points
        _row("bottle", "knn", (1.000, 0.990, 0.906), load=3.0),
        _row("bottle", "bikd", (1.000, 0.980, 0.950)),  # +0.0 / -1.0 / +4.4
    ]
    if with_pcb:
        rows += [
            _row("pcb", "knn", (0.900, 0.900, 0.800)),
            _row("pcb", "dhkd", (0.950, 0.900, 0.800)),
            _row("pcb", "bikd", (0.900, 0.890, 0.800), ba=0.7),
        ]
    return {"meta": META, "results": rows}


def test_table_marks_the_bound_and_means():
    bench = _load_bench()
    table = bench.render_table(_report(with_pcb=True))
    lines = table.splitlines()
    assert lines[0].startswith("| category | kNN wall s / CPU s / peak MiB |")
    bottle = next(line for line in lines if line.startswith("| bottle |"))
    cells = [c.strip() for c in bottle.strip("|").split("|")]
    # kNN (3 cells), DHKD (4), BiKD (4): knn first, then in the order of the results
    assert cells[1:4] == ["10.0 / 19.0 / 1024", "100.0 / 99.0 / 90.6", "0.90"]
    assert cells[6] == "-0.4 ✓ / +0.0 ✓ / -0.6 ✗"
    assert cells[10] == "+0.0 ✓ / -1.0 ✗ / +4.4 ✓"
    assert next(line for line in lines if line.startswith("| pcb ¹ |"))
    mean = next(line for line in lines if line.startswith("| **mean of 2** |"))
    mean_cells = [c.strip() for c in mean.strip("|").split("|")]
    assert mean_cells[2] == "95.0 / 94.5 / 85.3"  # the kNN's means
    assert mean_cells[6] == "+2.3 ✓ / +0.0 ✓ / -0.3 ✓"  # DHKD's means against them
    assert mean_cells[11] == "0.80"  # BiKD's BA ratio, mean of 0.9 and 0.7
    assert "DHKD meets the bound in 5 of 6 (category, metric) pairs." in table
    assert "BiKD meets the bound in 4 of 6 (category, metric) pairs." in table
    assert "¹ pcb:" in table and "approximate" in table
    assert "Machine: 2 cores (x86_64)" in table and "load average 1.0–3.5" in table


def test_table_without_pcb_has_no_pcb_footnote():
    bench = _load_bench()
    table = bench.render_table(_report(with_pcb=False))
    assert "pcb" not in table and "¹" not in table and "approximate" not in table
    assert "| **mean of 1** |" in table


def test_readme_section_added_once_then_replaced():
    bench = _load_bench()
    text = "# B\n\n## bench_methods.py\n\nAbout it.\n\n## bench_carryover.py\n\nOther.\n"
    first = bench.replace_section(text, "table one\n")
    assert first.index("About it.") < first.index(bench.BEGIN) < first.index("table one")
    assert first.index(bench.END) < first.index("## bench_carryover.py")
    second = bench.replace_section(first, "table two\n")
    assert second.count(bench.BEGIN) == 1 and "table one" not in second
    assert second == first.replace("table one", "table two")
    assert bench.replace_section("# B\n", "t\n") == f"# B\n\n{bench.BEGIN}\nt\n{bench.END}\n"


def test_categories_found_over_several_roots(tmp_path):
    bench = _load_bench()
    shared = tmp_path / "shared"
    for path in ("extra/bottle/train", "shared/mvtec/bottle/train", "shared/lookout/cookie/train",
                 "shared/deeppcb/pcb/train"):  # fmt: skip
        (tmp_path / path).mkdir(parents=True)
    roots = bench.dataset_roots([tmp_path / "extra"], shared)
    found = bench.find_roots(["bottle", "cookie", "pcb"], roots, shared)
    assert found == {"bottle": (tmp_path / "extra").resolve(),
                     "cookie": (shared / "lookout").resolve(),
                     "pcb": (shared / "deeppcb").resolve()}  # fmt: skip
    with pytest.raises(
        SystemExit, match=r"categories cookie, pcb not found.*does not exist.*--data"
    ):
        bench.find_roots(["bottle", "cookie", "pcb"], bench.dataset_roots([tmp_path / "extra"],
                         tmp_path / "absent"), tmp_path / "absent")  # fmt: skip


def test_unknown_category_names_the_roots_searched(tmp_path):
    bench = _load_bench()
    with pytest.raises(SystemExit, match="not found under"):
        bench.main(["--data", str(tmp_path), "--categories", "nothere"])


def _loo_file(tmp_path: Path, run: Path) -> Path:
    values = {
        setting: {c: {"image_auroc": a, "pixel_auroc": 0.9, "pixel_aupro": p}
                  for c, a, p in (("bottle", 0.99, 0.90), ("cookie", 0.95, 0.80),
                                  ("pcb", 0.90, 0.70 + shift))}
        for setting, shift in (("as trained", 0.0), ("smoothing_sigma=2", 0.05))
    }  # fmt: skip
    data = {"units": [{"run": str(run), "category": "pcb", "seed": 0}],
            "leave_one_out": leave_one_out(values, "pixel_aupro").to_json()}  # fmt: skip
    path = tmp_path / "loo.json"
    path.write_text(json.dumps(data))
    return path


def test_leave_one_out_rendered_with_method_from_the_runs(tmp_path):
    bench = _load_bench()
    run = tmp_path / "dhkd-pcb"
    run.mkdir()
    (run / "config.yaml").write_text("method: dhkd\nseed: 0\n")
    path = _loo_file(tmp_path, run)
    report = _report(with_pcb=True)
    text = bench.render_loo(str(path), report)
    assert "Leave-one-category-out: DHKD, setting chosen on test AU-PRO@0.3 (loo.json)" in text
    assert "| pcb | as trained * |" in text and "LOO estimate" in text
    assert "kNN" in text and "pcb: masks are" in text  # the kNN beside it; pcb approximate
    assert "Leave-one-category-out: BiKD" in bench.render_loo(f"bikd={path}", report)
    (run / "config.yaml").unlink()
    with pytest.raises(SystemExit, match="pass --loo METHOD="):
        bench.render_loo(str(path), report)
