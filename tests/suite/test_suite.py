"""Suite files: parsing errors, expansion through the study spec parser, the plan's arithmetic
on a costs table and on an MLflow store, the budget refusal, and the committed suites."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from dhkd.cli import main
from dhkd.errors import ConfigError
from dhkd.study.design.spec import load_spec, parse_spec, spec_tree
from dhkd.suite.costs import CostBook, mlflow_measurements, table_measurements, train_counter
from dhkd.suite.plan import cost_book, plan_suite
from dhkd.suite.spec import CostEntry, expand, load_suite

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "studies" / "suites"

STUDY = {
    "name": "depth",
    "description": "flow depth",
    "method": "dhkd",
    "data": {"synthetic": {"categories": ["widget"]}},
    "fixed": {"optim.epochs": 20},
    "scientific": {"teacher.depth": {"type": "categorical", "values": [2, 4]}},
    "sampler": {"type": "grid"},
    "scheduler": {"type": "none"},
    "reference": "knn",
}


def _data(root: Path, sizes: dict[str, int]) -> Path:
    for category, n in sizes.items():
        folder = root / category / "train" / "good"
        folder.mkdir(parents=True)
        for i in range(n):
            (folder / f"{i:03d}.png").write_bytes(b"")
    return root


def _suite(tmp_path: Path, studies: list, **shared) -> Path:
    """A suite file at tmp_path/suites/s.yaml (data roots resolve against tmp_path)."""
    tree = {"name": "s", "description": "a suite", "studies": studies, **shared}
    path = tmp_path / "suites" / "s.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def _costs(method: str, **walls: float) -> list[dict]:
    return [{"method": method, "preset": "quick", "category": c, "wall_s": w}
            for c, w in walls.items()]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: s\ndescription: d\nstudies: [a.yaml]\nbudget: {wall_hour: 8}\n",
         "s.yaml:4: unknown key 'budget.wall_hour'"),
        ("name: s\ndescription: d\nstudies: []\n", "s.yaml:3: 'studies'"),
        ("name: s\ndescription: d\nstudies: [a.yaml]\nresources:\n  nodes: 0\n",
         "s.yaml:5: 'resources.nodes'"),
        ("name: s\ndescription: d\nname: t\nstudies: [a.yaml]\n", "s.yaml:3:1"),
        ("name: s\nstudies: [a.yaml]\n", "'description': required key is missing"),
        ("name: s\ndescription: d\nreference: nope\nstudies: [a.yaml]\n", "s.yaml:3: 'reference'"),
    ],
)  # fmt: skip
def test_a_bad_suite_is_named_with_its_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.").replace("(", r"\(")):
        load_suite(path)


def test_bad_study_entries_name_the_suite_line(tmp_path: Path) -> None:
    bad = {**STUDY, "num_samples": 0}
    with pytest.raises(
        ConfigError, match=r"(?s)s\.yaml:4:.*num_samples.*greater than or equal to 1"
    ):
        expand(load_suite(_suite(tmp_path, [bad])))
    with pytest.raises(ConfigError, match=r"s\.yaml:4: study file .*missing\.yaml does not exist"):
        expand(load_suite(_suite(tmp_path, ["missing.yaml"])))
    with pytest.raises(ConfigError, match=r"study name s-depth is also the name of"):
        expand(load_suite(_suite(tmp_path, [STUDY, STUDY])))


def test_expansion_is_what_the_study_parser_accepts(tmp_path: Path) -> None:
    root = _data(tmp_path / "data", {"a": 4, "b": 8})
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "depth.yaml").write_text(yaml.safe_dump(STUDY))
    shared = {
        "data": {"root": "data", "dataset": "custom", "categories": ["a", "b"]},
        "seeds": [3, 4], "preset": "quick",
        "selection": {"protocol": "test_fold", "val_fraction": 0.5, "seed": 1},
        "resources": {"cpus_per_trial": 2, "gpus_per_trial": 0.5, "concurrent_trials": 2,
                      "nodes": 3},
    }  # fmt: skip
    entries = ["../studies/depth.yaml", {"from": "../studies/depth.yaml", "name": "d2",
                                          "scientific": {"teacher.depth": {
                                              "type": "categorical", "values": [8]}}}]  # fmt: skip
    specs = expand(load_suite(_suite(tmp_path, entries, **shared)))
    assert [s.name for s in specs] == ["s-depth", "s-d2"]
    first = specs[0]
    assert first.data_roots() == [root.resolve()]
    assert first.units == [("a", 3), ("a", 4), ("b", 3), ("b", 4)]
    assert (first.selection.protocol, first.resources.gpu, first.budget.max_concurrent) == (
        "test_fold",
        0.5,
        6,
    )
    assert specs[1].trials == 1 and first.trials == 2
    by_hand = {**STUDY, "name": "s-depth", "data": shared["data"], "seeds": [3, 4],
               "preset": "quick", "selection": shared["selection"],
               "resources": {"cpu": 2, "gpu": 0.5}, "budget": {"max_concurrent": 6}}  # fmt: skip
    assert first == parse_spec(by_hand, base_dir=tmp_path)


def test_reference_units_are_counted_once_across_studies(tmp_path: Path) -> None:
    _data(tmp_path / "data", {"a": 10, "b": 10})
    data = {"root": "data", "dataset": "custom", "categories": ["a", "b"]}
    costs = _costs("dhkd", a=100.0, b=300.0) + _costs("knn", a=10.0, b=30.0)
    second = {**STUDY, "name": "other"}
    path = _suite(tmp_path, [STUDY, second], data=data, seeds=[0, 1], costs=costs,
                  resources={"cpus_per_trial": 2, "concurrent_trials": 2})  # fmt: skip
    suite = load_suite(path)
    specs = expand(suite)
    plan = plan_suite(suite, specs, cost_book(suite, specs, None))
    (ref,) = plan.references
    assert (ref.units, ref.listed) == (4, 8)
    assert ref.compute.wall_s == pytest.approx(2 * (10 + 30))
    for study in plan.studies:  # 2 trials x 2 seeds x (100 + 300) s
        assert study.compute.wall_s == pytest.approx(1600.0)
        assert study.compute.cpu_s == pytest.approx(3200.0)  # no CPU s measured: wall x 2 CPUs
        assert study.compute.gpu_s == 0.0
    assert plan.total.wall_s == pytest.approx(3280.0)
    assert plan.wall_s == pytest.approx(1640.0)  # over 2 trials at once
    assert plan.problems() == []


def test_the_plan_of_a_resumed_suite_counts_only_what_is_left(tmp_path: Path) -> None:
    """A complete study costs nothing, nor its reference; one extended by a seed costs its
    trials x the new units, and its reference every unit (it is measured again)."""
    from dhkd.study.driver.reference import reference_dir
    from dhkd.study.state.layout import StudyPaths, write_json
    from dhkd.suite.plan import format_plan
    from dhkd.suite.run import done_work

    _data(tmp_path / "data", {"a": 10, "b": 10})
    data = {"root": "data", "dataset": "custom", "categories": ["a", "b"]}
    costs = _costs("dhkd", a=100.0, b=300.0) + _costs("knn", a=10.0, b=30.0)
    second = {**STUDY, "name": "other"}
    path = _suite(tmp_path, [STUDY, second], data=data, seeds=[0], costs=costs)
    storage = tmp_path / "ray"
    for spec in expand(load_suite(path)):  # both studies ran to the end on seed 0
        paths = StudyPaths(storage, spec.name)
        paths.dir.mkdir(parents=True)
        paths.spec.write_text(yaml.safe_dump(spec_tree(spec), sort_keys=False))
        write_json(paths.dir / "summary.json", {"complete": True, "counts": {"COMPLETE": 2}})
        reference_dir(paths).mkdir(parents=True)
        (reference_dir(paths) / "metrics.json").write_text("{}")
    suite = load_suite(path)
    specs = expand(suite)
    plan = plan_suite(suite, specs, cost_book(suite, specs, None), done_work(specs, storage))
    assert [s.state for s in plan.studies] == ["complete", "complete"]
    assert plan.total.wall_s == 0.0 and plan.references[0].units == 0

    path = _suite(tmp_path, [STUDY, second], data=data, seeds=[0, 1], costs=costs)
    suite = load_suite(path)
    specs = expand(suite)
    plan = plan_suite(suite, specs, cost_book(suite, specs, None), done_work(specs, storage))
    for study in plan.studies:  # 2 trials x the new seed x (100 + 300) s
        assert (study.state, study.to_train) == ("extension", 4)
        assert study.compute.wall_s == pytest.approx(800.0)
    (ref,) = plan.references  # measured again on every unit of the extended studies
    assert ref.units == 4 and ref.compute.wall_s == pytest.approx(80.0)
    assert "extended: only the new units and trials are counted" in format_plan(plan)


def test_unmeasured_categories_scale_the_mean_by_train_size(tmp_path: Path) -> None:
    roots = [_data(tmp_path / "d", {"a": 10, "b": 30, "c": 80})]
    suite_path = _suite(tmp_path, [STUDY], costs=_costs("dhkd", a=10.0, b=50.0))
    book = CostBook("cpu", [("costs table", table_measurements(load_suite(suite_path)))],
                    train_counter(roots))  # fmt: skip
    cost = book.unit_cost("dhkd", "quick", "c")
    assert cost is not None and cost.wall_s == pytest.approx(30.0 * 80 / 20)
    assert cost.source == "costs table: mean of dhkd x train size"
    assert book.unit_cost("dhkd", "quick", "a").source == "costs table: a"
    assert (
        book.unit_cost("dhkd", "quick", "elsewhere").source == "costs table: mean of dhkd, unscaled"
    )
    assert book.unit_cost("dhkd", "paper", "a") is None
    assert CostBook("gpu", book.sources, book.train_size).unit_cost("dhkd", "quick", "a") is None


def test_mlflow_costs_come_before_the_table(tmp_path: Path, tracking_uri: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.create_experiment("earlier")
    study = client.create_run(exp, tags={"dhkd.role": "study"}).info.run_id
    client.log_param(study, "spec.preset", "quick")
    client.log_param(study, "spec.data.categories", '["a", "b"]')
    client.log_param(study, "spec.seeds", "[0, 1]")
    runs = [("trial", {"dhkd.categories": "a", "dhkd.seeds": "0,1"}, 80.0, "COMPLETE"),
            ("trial", {"dhkd.categories": "a", "dhkd.seeds": "0,1"}, 999.0, "PRUNED"),
            ("reference", {"dhkd.reference": "knn"}, 40.0, "COMPLETE")]  # fmt: skip
    for role, tags, wall, state in runs:
        run_tags = {"dhkd.role": role, "mlflow.parentRunId": study, "state": state,
                    "device": "cpu", **tags}  # fmt: skip
        run = client.create_run(exp, tags=run_tags).info.run_id
        client.log_param(run, "method", "dhkd")
        client.log_metric(run, "cost/wall_s", wall)
        client.log_metric(run, "cost/cpu_s", 2 * wall)
    found = sorted(mlflow_measurements(client), key=lambda m: m.method)
    assert [(m.method, m.categories, m.units, m.wall_s) for m in found] == [
        ("dhkd", ("a",), 2, 80.0), ("knn", ("a", "b"), 4, 40.0)]  # fmt: skip
    _data(tmp_path / "data", {"a": 10, "b": 10})
    data = {"root": "data", "dataset": "custom", "categories": ["a", "b"]}
    path = _suite(tmp_path, [STUDY], data=data, costs=_costs("dhkd", a=1.0, b=7.0))
    suite = load_suite(path)
    specs = expand(suite)
    plan = plan_suite(suite, specs, cost_book(suite, specs, tracking_uri))
    a, b = plan.unit_costs[("dhkd", "quick", "a")], plan.unit_costs[("dhkd", "quick", "b")]
    assert (a.wall_s, a.cpu_s, a.source.split(": ")[1]) == (40.0, 80.0, "a")
    assert a.source.startswith("mlflow sqlite:")
    assert (b.wall_s, b.source) == (40.0, a.source.split(": ")[0] + ": mean of dhkd x train size")
    assert plan.unit_costs[("knn", "quick", "b")].wall_s == 10.0


def test_plan_refuses_a_suite_over_budget(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no runs/mlflow.db here: the costs table alone
    _data(tmp_path / "data", {"a": 10})
    data = {"root": "data", "dataset": "custom", "categories": ["a"]}
    costs = _costs("dhkd", a=3600.0) + _costs("knn", a=360.0)
    path = _suite(tmp_path, [STUDY], data=data, costs=costs, budget={"wall_hours": 2})
    assert main(["suite", "plan", str(path), "--tracking-uri", "sqlite:///none.db"]) == 2
    assert "no such tracking store" in capsys.readouterr().err
    assert main(["suite", "plan", str(path)]) == 1  # 2 trials x 1 h + 0.1 h
    captured = capsys.readouterr()
    assert "wall time: 2.10 h" in captured.out
    assert "the estimated wall time, 2.1 h, exceeds budget.wall_hours (2 h)" in captured.err
    path = _suite(tmp_path, [STUDY], data=data, costs=costs, budget={"wall_hours": 3})
    assert main(["suite", "plan", str(path)]) == 0
    path = _suite(tmp_path, [STUDY], data=data, budget={"wall_hours": 3})
    assert main(["suite", "plan", str(path)]) == 1
    err = capsys.readouterr().err
    assert "the budget cannot be checked: no cost is known for dhkd, knn (quick) on a" in err
    assert "benchmarks/bench_methods.py --preset quick --methods dhkd knn --categories a" in err


def test_local_suite_plans_within_its_budget() -> None:
    suite = load_suite(SUITES / "local.yaml")
    specs = expand(suite)
    assert [s.name for s in specs] == [
        "local-compare_dhkd_bikd", "local-noise_level", "local-flow_depth",
        "local-affinity_weight", "local-dual_domain", "local-bikd_ablation"]  # fmt: skip
    for spec in specs:  # the preset's own settings, nothing tuned
        assert spec.preset == "quick" and spec.resources.cpu == 2 and len(spec.units) == 8
        assert spec.fixed == {} and spec.nuisance == {} and spec.sampler.type == "grid"
    plan = plan_suite(suite, specs, cost_book(suite, specs, None))
    assert plan.missing == [] and plan.problems() == []
    assert plan.wall_s is not None and plan.wall_s < 8 * 3600  # overnight on 2 cores
    (ref,) = plan.references
    assert (ref.method, ref.units, ref.listed) == ("knn", 8, 48)


def test_mvtec15_suite_reuses_the_paper_specs() -> None:
    suite = load_suite(SUITES / "mvtec15.yaml")
    specs = expand(suite)
    for spec, entry in zip(specs, suite.studies, strict=True):
        paper = load_spec(SUITES / str(entry))
        assert spec.name == f"mvtec15-{paper.name}"
        assert (spec.space, spec.fixed, spec.trials) == (paper.space, paper.fixed, paper.trials)
        assert (spec.preset, len(spec.units), spec.resources.gpu) == ("paper", 45, 0.5)
    plan = plan_suite(suite, specs, cost_book(suite, specs, None))
    assert len(plan.missing) == 45 and "cannot be checked" in plan.problems()[0]
    costs = [{"method": m, "preset": "paper", "wall_s": w, "device": "gpu"}
             for m, w in (("dhkd", 60.0), ("bikd", 60.0), ("knn", 6.0))]  # fmt: skip
    suite = suite.model_copy(update={"costs": [CostEntry(**c) for c in costs]})
    plan = plan_suite(suite, specs, cost_book(suite, specs, None))
    assert plan.missing == []
    trained = sum(s.trials * s.units for s in plan.studies)
    assert plan.total.gpu_s == pytest.approx(trained * 60 * 0.5 + 45 * 6)


def test_run_refuses_the_plan_problems_before_running_anything(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _data(tmp_path / "data", {"a": 10})
    data = {"root": "data", "dataset": "custom", "categories": ["a"]}
    costs = _costs("dhkd", a=3600.0) + _costs("knn", a=360.0)
    path = _suite(tmp_path, [STUDY], data=data, costs=costs, budget={"wall_hours": 2})
    storage = tmp_path / "ray"
    assert main(["suite", "run", str(path), "--storage-path", str(storage)]) == 1
    err = capsys.readouterr().err
    assert "dhkd suite run: the estimated wall time, 2.1 h, exceeds budget.wall_hours" in err
    assert "nothing was run; fix the plan, or run it anyway with --force" in err
    assert not storage.exists()


SMOKE_STUDY = {
    "description": "a tiny study of the suite smoke test",
    "method": "dhkd",
    "fixed": {"data.image_size": 64, "data.max_train_images": 16, "optim.epochs": 1,
              "optim.eval_every": 1, "optim.device": "cpu"},
    "sampler": {"type": "grid", "seed": 0},
    "scheduler": {"type": "none"},
}  # fmt: skip


@pytest.mark.slow
def test_a_suite_runs_shares_its_reference_and_skips_what_is_done(
    tmp_path: Path, tracking_uri: str, ray_local, capsys, monkeypatch
) -> None:
    """Two tiny studies on generated data, a method comparison and an ablation that leaves
    its default out: the kNN reference is trained once per (category, seed) across both, the
    second study's reference run names the first's, the suite summary holds the estimate and
    the actual time, the document is written (its numbers are MLflow's, the ablation's
    default row is the comparison's DHKD trial, main.tex compiles where pdflatex is), and a
    second `suite run` skips both studies (extension: test_an_extended_suite_shares_...)."""
    from mlflow.tracking import MlflowClient

    import dhkd.training.fit
    from dhkd.report.collect import load_study

    trained: list[tuple[str, int]] = []
    real_fit = dhkd.training.fit.fit_units

    def counting_fit(cfg, data_root, units, **kwargs):  # the driver's own trainings: reference
        trained.extend(units)
        return real_fit(cfg, data_root, units, **kwargs)

    monkeypatch.setattr(dhkd.training.fit, "fit_units", counting_fit)
    method = {"type": "categorical", "values": ["dhkd", "bikd"]}
    sigma = {"type": "categorical", "values": [0.0]}  # the tiny preset's default: 0.2
    studies = [{**SMOKE_STUDY, "name": "a", "scientific": {"method": method}},
               {**SMOKE_STUDY, "name": "b", "scientific": {"noise.sigma": sigma}}]  # fmt: skip
    synthetic = {"categories": ["widget"], "image_size": 64, "n_train": 8, "n_test_good": 4,
                 "n_test_defect": 4, "seed": 0}  # fmt: skip
    path = _suite(tmp_path, studies, data={"synthetic": synthetic}, seeds=[0, 1], preset="tiny",
                  reference="knn")  # fmt: skip
    storage = tmp_path / "ray"
    doc = tmp_path / "doc"
    args = ["suite", "run", str(path), "--tracking-uri", tracking_uri,
            "--storage-path", str(storage), "--quiet", "--out", str(doc)]  # fmt: skip

    assert main(args) == 0
    out = capsys.readouterr().out
    assert sorted(trained) == [("widget", 0), ("widget", 1)]  # once per unit, not per study
    assert "the reference measured by s-a (MLflow run " in out
    assert "wall time of this run: estimated unknown, actual " in out

    client = MlflowClient(tracking_uri)
    a, b = load_study("s-a", tracking_uri), load_study("s-b", tracking_uri)
    assert a.reference is not None and b.reference is not None
    assert b.reference.tags["dhkd.reference.source_run"] == a.reference.run_id
    assert b.reference.tags["dhkd.reference.source_study"] == "s-a"
    assert b.reference.run_id != a.reference.run_id  # its own run, under its own study run
    shared = {k: v for k, v in a.reference.metrics.items() if not k.startswith("cost/")}
    assert b.reference.metrics == shared  # the compute: a's alone
    assert a.reference.metrics["cost/wall_s"] > 0
    assert "metrics.json" in {f.path for f in client.list_artifacts(b.reference.run_id)}
    summary = json.loads((storage / "suites" / "s.json").read_text())
    assert summary["suite"] == "s" and summary["finished"]
    assert [s["name"] for s in summary["studies"]] == ["s-a", "s-b"]
    assert summary["studies"][1]["reference_from"] == {"study": "s-a",
                                                       "run_id": a.reference.run_id}  # fmt: skip
    assert summary["estimate"]["wall_s"] is None  # no costs known for the tiny preset
    first = summary["actual"]["wall_s"]
    assert first > 0 and summary["started"] <= summary["ended"]
    _check_document(doc, out, client, a, b)

    assert main([*args, "--no-document"]) == 0  # everything done: skipped, nothing trained
    out = capsys.readouterr().out
    assert "study s-a: complete, skipped" in out and "study s-b: complete, skipped" in out
    assert len(trained) == 2
    summary = json.loads((storage / "suites" / "s.json").read_text())
    assert len(summary["runs"]) == 2 and summary["runs"][1]["studies_skipped"] == ["s-a", "s-b"]
    assert summary["actual"]["wall_s"] >= first
    assert [len(load_study(n, tracking_uri).trials) for n in ("s-a", "s-b")] == [2, 1]

    one = tmp_path / "one"  # the other layout, from the tracking store alone
    assert main(["suite", "report", str(path), "--tracking-uri", tracking_uri, "--storage-path",
                 str(storage), "--out", str(one), "--latex-layout", "onecolumn"]) == 0  # fmt: skip
    assert r"\documentclass[10pt]{article}" in (one / "main.tex").read_text()
    _check_latex(one)


def _check_latex(doc: Path) -> None:
    meta = json.loads((doc / "document.json").read_text())
    if shutil.which("pdflatex") is None:
        assert (
            meta["latex"]["compiled"] is False
            and "pdflatex not found" in meta["latex"]["errors"][0]
        )
        return
    assert meta["latex"] == {"compiled": True, "errors": [], "overfull": []}
    assert (doc / "main.pdf").stat().st_size > 10_000
    assert not list(doc.glob("main.aux")) and not list(doc.glob("main.log"))


def _check_document(doc: Path, out: str, client, a, b) -> None:
    """The suite document of the smoke suite (see the test's docstring)."""
    import csv

    assert f"[dhkd] suite document: {doc}/README.md (3 main tables, 1 ablation tables" in out
    for name in ("README.md", "README.html", "main.tex", "provenance.csv", "document.json",
                 "tables/main_pixel_aupro.tex", "tables/ablation_s-b.tex", "tables/preamble.tex",
                 "figures/qualitative.png"):  # fmt: skip
        assert (doc / name).is_file(), name
    _check_latex(doc)
    main_csv = (doc / "tables" / "main_pixel_aupro.csv").read_text()
    head = main_csv.splitlines()[0]
    assert head.startswith("category,method=dhkd mean,method=dhkd std,method=dhkd n,method=bikd")
    assert "reference mean" in head and "| DHKD (#" in (doc / "README.md").read_text()
    ablation = (doc / "tables" / "ablation_s-b.csv").read_text().splitlines()
    dhkd = next(c for c in a.complete if c.params["method"] == "dhkd")
    default = [r for r in ablation if r.startswith("σ 0.2,1,pixel_aupro")]
    assert len(default) == 1 and default[0].endswith(f",{dhkd.run_id},s-a")
    tex = (doc / "main.tex").read_text()
    assert r"\input{tables/main_image_auroc}" in tex and r"\input{tables/ablation_s-b}" in tex
    with open(doc / "provenance.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("run_id") and r.get("metric_key")]
    assert {r["table"] for r in rows} >= {"main_pixel_aupro", "ablation_s-b"}
    runs = {}
    for row in rows:  # every number is the value MLflow holds for its run and key
        run = runs.setdefault(row["run_id"], client.get_run(row["run_id"]))
        assert float(row["mlflow_value"]) == pytest.approx(run.data.metrics[row["metric_key"]])
    assert any(r["run_id"] == b.trials[0].run_id for r in rows)


def test_a_reference_not_yet_in_mlflow_is_measured_again(tmp_path: Path) -> None:
    """The suite shares a reference only with the MLflow run that measured it to name; until
    that run is logged (tracking.json), a later study measures its own."""
    from types import SimpleNamespace

    from dhkd.study.driver.reference import reference_dir, reference_source
    from dhkd.study.driver.runner import RunOptions
    from dhkd.study.state.layout import StudyPaths, write_json
    from dhkd.suite.run import run_suite

    _data(tmp_path / "data", {"a": 4})
    data = {"root": "data", "dataset": "custom", "categories": ["a"]}
    path = _suite(tmp_path, [STUDY, {**STUDY, "name": "other"}], data=data)
    suite = load_suite(path)
    specs = expand(suite)
    plan = plan_suite(suite, specs, cost_book(suite, specs, None))
    opts = RunOptions(storage_path=tmp_path / "ray")
    ran: list[tuple[str, bool]] = []

    def fake_run(spec, opts):  # a study measuring its reference unless it has one
        paths = StudyPaths(opts.storage_path, spec.name)
        shared = (reference_dir(paths) / "metrics.json").is_file()
        ran.append((spec.name, shared))
        if not shared:
            reference_dir(paths).mkdir(parents=True)
            (reference_dir(paths) / "metrics.json").write_text("{}")
            (reference_dir(paths) / "cost.json").write_text('{"wall_s": 1.0}')
        return SimpleNamespace(complete=False, counts=lambda: {}, wall_s=1.0)

    said: list[str] = []
    run_suite(plan, specs, opts, run=fake_run, say=said.append)
    assert ran == [("s-depth", False), ("s-other", False)]
    assert any("s-other measures its own reference" in s and "dhkd study sync s-depth" in s
               for s in said)  # fmt: skip
    first, second = (StudyPaths(opts.storage_path, s.name) for s in specs)
    shutil.rmtree(reference_dir(second))
    write_json(first.tracking_state, {"reference_run_id": "r1", "reference_logged": True})
    ran.clear()
    run_suite(plan, specs, opts, run=fake_run, say=said.append)
    assert ran == [("s-depth", True), ("s-other", True)]
    assert reference_source(second) == {"study": "s-depth", "run_id": "r1"}
    assert not (reference_dir(second) / "cost.json").exists()  # the compute stays with s-depth


def test_an_extended_suite_shares_its_remeasured_reference(tmp_path: Path) -> None:
    """Given one more seed, the first study measures its reference again on every unit and the
    later study gets that measurement, not its own old one (a stand-in for the study runner)."""
    from types import SimpleNamespace

    from dhkd.study.driver.reference import measured_units, reference_dir, reference_source
    from dhkd.study.driver.runner import RunOptions
    from dhkd.study.state.layout import StudyPaths, write_json
    from dhkd.suite.run import run_suite

    _data(tmp_path / "data", {"a": 4})
    data = {"root": "data", "dataset": "custom", "categories": ["a"]}
    opts = RunOptions(storage_path=tmp_path / "ray")
    ran: list[tuple[str, bool]] = []

    def fake_run(spec, opts):  # measures the reference on the spec's units unless it has them
        paths = StudyPaths(opts.storage_path, spec.name)
        has = set(spec.units) <= measured_units(paths)
        ran.append((spec.name, has))
        if not has:
            units = [{"category": c, "seed": s} for c, s in spec.units]
            shutil.rmtree(reference_dir(paths), ignore_errors=True)
            reference_dir(paths).mkdir(parents=True)
            (reference_dir(paths) / "metrics.json").write_text(json.dumps({"units": units}))
            write_json(paths.tracking_state, {"reference_run_id": f"r-{spec.name}",
                                              "reference_logged": True})  # fmt: skip
        return SimpleNamespace(complete=True, counts=lambda: {}, wall_s=1.0)

    for seeds, expected in (([0], [("s-depth", False), ("s-other", True)]),
                            ([0, 1], [("s-depth", False), ("s-other", True)])):  # fmt: skip
        path = _suite(tmp_path, [STUDY, {**STUDY, "name": "other"}], data=data, seeds=seeds)
        suite = load_suite(path)
        specs = expand(suite)
        ran.clear()
        run_suite(plan_suite(suite, specs, cost_book(suite, specs, None)), specs, opts,
                  run=fake_run, say=lambda _: None)  # fmt: skip
        assert ran == expected
        second = StudyPaths(opts.storage_path, "s-other")
        assert measured_units(second) == {("a", s) for s in seeds}
        assert reference_source(second) == {"study": "s-depth", "run_id": "r-s-depth"}
