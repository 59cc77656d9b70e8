"""Bad input to studies and their tracking never leaves wrong state (issue: bad input never
corrupts state): FAILED trials are retried with the same identities, a refused study leaves
nothing behind, one study name is one study, read-only commands never write, YAML errors and
unreachable stores are one line (exit 2) without a traceback.

Trainings are fakes (tests/study/study_helpers.py) on a local Ray; MLflow stores are copies
of one migrated sqlite file.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest
import yaml

from dhkd.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "study"))
from study_helpers import fake_data, fake_spec_tree, make_fake_fit, optuna_trials


@pytest.fixture
def fake_fit(monkeypatch):
    """`dhkd study run` trains with fits["fit"] (a fake of fit_units) instead of real ones."""
    from dhkd.study.driver import runner

    fits: dict = {}
    original = runner.run_study

    def run_study(spec, opts):
        opts.fit_fn = fits["fit"]
        return original(spec, opts)

    monkeypatch.setattr(runner, "run_study", run_study)
    return fits


def _spec(tmp_path: Path, name: str, values=(0.1, 0.99), **changes) -> Path:
    root = tmp_path / "data"
    fake_data(root, ["a", "b"])
    tree = fake_spec_tree(root, name=name, retries=0, scheduler={"type": "none"},
                          fixed={"optim.epochs": 2, "optim.eval_every": 1},
                          scientific={"noise.sigma": {"type": "categorical",
                                                      "values": list(values)}})  # fmt: skip
    tree.update(changes)
    path = tmp_path / f"{name}-{len(list(tmp_path.glob('*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def _cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    _rebind_log_streams()
    rc = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return rc, captured.out, captured.err


def _rebind_log_streams() -> None:
    """Log handlers that an earlier in-process run (another test file) made write to its
    captured stream, closed since: they now write to this test's."""
    import logging

    loggers = [logging.root, *logging.root.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            stream = getattr(handler, "stream", None)
            if isinstance(handler, logging.StreamHandler) and getattr(stream, "closed", False):
                handler.stream = sys.stderr


def _one_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _trial_runs(uri: str, name: str) -> dict[int, object]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], "tags.`dhkd.role` = 'trial'")
    return {int(r.data.tags["optuna_trial_number"]): r for r in runs}


@pytest.mark.slow
def test_failed_trials_are_retried_with_their_identities(tmp_path, tracking_uri, ray_local,
                                                         fake_fit, capsys):  # fmt: skip
    spec, storage = _spec(tmp_path, "retry"), tmp_path / "ray"
    run = ["study", "run", str(spec), "--storage-path", str(storage), "--tracking-uri",
           tracking_uri, "--quiet"]  # fmt: skip
    fake_fit["fit"] = make_fake_fit(tmp_path / "marks", fail_sigma=0.99)
    rc, out, _ = _cli(capsys, run)
    assert rc == 1  # a study with a FAILED trial is not a success
    retry = (f"dhkd study run {spec} --storage-path {storage} --tracking-uri {tracking_uri} "
             "--retry-failed")  # fmt: skip
    assert "1 trial(s) FAILED" in out and retry in out
    failed = {t.number: t for t in optuna_trials(storage, "retry") if t.state.name == "FAIL"}
    ((number, before),) = failed.items()
    run_id = _trial_runs(tracking_uri, "retry")[number].info.run_id
    assert _trial_runs(tracking_uri, "retry")[number].info.status == "FAILED"

    fake_fit["fit"] = make_fake_fit(tmp_path / "marks", fail_sigma=-1.0)  # the cause is fixed
    rc, out, _ = _cli(capsys, [*run[:-1], "--retry-failed"])
    assert rc == 0, out
    trials = optuna_trials(storage, "retry")
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials)
    assert trials[number].params == before.params
    assert trials[number].user_attrs["params"] == before.user_attrs["params"]
    runs = _trial_runs(tracking_uri, "retry")
    assert len(runs) == 2 and runs[number].info.run_id == run_id
    after = runs[number]
    assert after.info.status == "FINISHED" and after.data.tags["state"] == "COMPLETE"
    assert "error" not in after.data.tags and "non-finite" in after.data.tags["previous_error"]
    assert after.data.tags["mlflow.note.content"].startswith("COMPLETE")


@pytest.mark.slow
def test_a_study_whose_trials_all_fail_exits_1(tmp_path, tracking_uri, ray_local, fake_fit, capsys):
    spec = _spec(tmp_path, "allfail", values=(0.99,))
    fake_fit["fit"] = make_fake_fit(tmp_path / "marks", fail_sigma=0.99)
    rc, out, _ = _cli(capsys, ["study", "run", str(spec), "--storage-path",
                               str(tmp_path / "ray"), "--tracking-uri", tracking_uri])  # fmt: skip
    assert rc == 1 and "1 FAILED" in out and "--retry-failed" in out


@pytest.mark.slow
def test_a_refused_study_leaves_nothing_behind(tmp_path, tracking_uri, ray_local, fake_fit, capsys):
    storage = tmp_path / "ray"
    big = _spec(tmp_path, "refused", values=(0.1,), resources={"cpu": 512, "gpu": 0})
    base = ["--storage-path", str(storage), "--tracking-uri", tracking_uri, "--quiet"]
    fake_fit["fit"] = make_fake_fit(tmp_path / "marks")
    rc, _, err = _cli(capsys, ["study", "run", str(big), *base])
    assert rc == 2 and "no Ray node has the 512 CPU" in _one_error(err)
    assert not (storage / "refused").exists()
    from mlflow.tracking import MlflowClient

    assert MlflowClient(tracking_uri).get_experiment_by_name("refused") is None
    rc, out, err = _cli(capsys, ["study", "status", "refused", "--storage-path", str(storage)])
    assert rc == 2 and "WAITING" not in out and "no study at" in _one_error(err)

    fixed = _spec(tmp_path, "refused", values=(0.1,))
    assert _cli(capsys, ["study", "run", str(fixed), *base])[0] == 0  # the corrected rerun
    other = _spec(tmp_path, "refused", values=(0.1, 0.2))
    rc, _, err = _cli(capsys, ["study", "run", str(other), *base])
    assert rc == 2 and f"already exists in {storage / 'refused'} with a different spec" in err
    assert f"or delete {storage / 'refused'} to start" in err


@pytest.mark.slow
def test_one_study_name_is_one_study(tmp_path, tracking_uri, ray_local, fake_fit, capsys):
    first, second = tmp_path / "ray-a", tmp_path / "ray-b"
    fake_fit["fit"] = make_fake_fit(tmp_path / "marks")
    spec = _spec(tmp_path, "named", values=(0.1,))
    run = ["study", "run", str(spec), "--tracking-uri", tracking_uri, "--quiet", "--storage-path"]
    assert _cli(capsys, [*run, str(first)])[0] == 0
    other = _spec(tmp_path, "named", values=(0.1, 0.2))
    rc, _, err = _cli(capsys, ["study", "run", str(other), "--tracking-uri", tracking_uri,
                               "--storage-path", str(second)])  # fmt: skip
    line = _one_error(err)
    assert rc == 2 and f"with its files under {first}; pass --storage-path {first}" in line
    assert "--name NEW_NAME" in line and not (second / "named").exists()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("named")
    assert len(client.search_runs([exp.experiment_id], "tags.`dhkd.role` = 'study'")) == 1
    rc, out, _ = _cli(capsys, ["study", "status", "named", "--tracking-uri", tracking_uri,
                               "--storage-path", str(second)])  # fmt: skip
    assert rc == 0 and "1 COMPLETE" in out


def test_read_only_commands_never_write(tmp_path, tracking_uri, capsys):
    missing = tmp_path / "none" / "mlflow.db"
    rc, _, err = _cli(capsys, ["study", "status", "x", "--tracking-uri", f"sqlite:///{missing}"])
    assert rc == 2 and "no such tracking store" in _one_error(err)
    assert not missing.parent.exists()


def test_yaml_errors_are_one_line(tmp_path, synthetic_root, capsys):
    dup = tmp_path / "dup.yaml"
    tree = yaml.safe_dump(fake_spec_tree(synthetic_root), sort_keys=False)
    dup.write_text(tree + "fixed:\n  optim.epochs: 3\n")
    line = len(tree.splitlines()) + 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nfixed: {a: [1\n")
    for argv in (["study", "check", str(dup)], ["study", "run", str(dup)],
                 ["train", "--config", str(dup), "--data", str(synthetic_root),
                  "--category", "widget", "--out", str(tmp_path / "run")]):  # fmt: skip
        rc, _, err = _cli(capsys, argv)
        assert rc == 2 and f"{dup}:{line}:1: invalid YAML: duplicated key 'fixed'" in err
        _one_error(err)
    rc, _, err = _cli(capsys, ["study", "check", str(bad)])
    assert rc == 2 and f"{bad}:3:1: invalid YAML:" in _one_error(err)
    assert not (tmp_path / "run").exists()


def test_study_check_reports_every_spec(tmp_path, synthetic_root, capsys):
    good = tmp_path / "good.yaml"
    tree = fake_spec_tree(synthetic_root, name="good")
    tree["data"]["categories"] = ["widget"]
    good.write_text(yaml.safe_dump(tree))
    absent = tmp_path / "absent.yaml"
    tree["data"]["categories"] = ["widget", "gizmo"]
    absent.write_text(yaml.safe_dump(tree))
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [x\n")
    rc, out, err = _cli(capsys, ["study", "check", str(bad), str(absent), str(good)])
    assert rc == 2 and f"{good}: ok - good" in out
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"{bad}:2:1: invalid YAML") and len(lines) == 3
    assert lines[1].startswith(f"{absent}: 1 data error(s)") and "gizmo: category not" in lines[2]


def test_unusable_tracking_stores_fail_fast(tmp_path, capsys):
    start = time.monotonic()
    rc, _, err = _cli(capsys, ["study", "status", "x", "--tracking-uri", "http://127.0.0.1:9/"])
    assert rc == 2 and "does not answer" in _one_error(err)
    assert time.monotonic() - start < 15
    text = tmp_path / "notes.db"
    text.write_text("not a database\n")
    for argv in (["study", "status", "x"], ["study", "run", str(_spec(tmp_path, "x"))]):
        rc, _, err = _cli(capsys, [*argv, "--tracking-uri", f"sqlite:///{text}"])
        assert rc == 2 and f"{text} is not an MLflow sqlite database" in _one_error(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder")
def test_a_store_in_an_unwritable_folder_fails_fast(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    rc, _, err = _cli(capsys, ["study", "run", str(_spec(tmp_path, "x")), "--tracking-uri",
                               f"sqlite:///{folder / 'mlflow.db'}"])  # fmt: skip
    assert rc == 2 and "cannot be written" in _one_error(err)


def test_ui_refuses_a_port_it_cannot_serve(tmp_path, tracking_uri, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        rc, out, err = _cli(capsys, ["ui", "--tracking-uri", tracking_uri, "--port", str(port)])
    assert rc == 2 and out == "" and f"127.0.0.1:{port}" in _one_error(err)
    assert "--port" in err
    with pytest.raises(SystemExit) as exit_:
        main(["ui", "--port", "99999"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "99999 is not a port number" in err


def test_an_interrupted_run_reports_interrupted_trials_without_ray_hints(tmp_path):
    import logging

    from dhkd.study.design.spec import parse_spec
    from dhkd.study.driver.runner import _RayNoise
    from dhkd.study.driver.searcher import open_optuna_study
    from dhkd.study.state.layout import StudyPaths
    from dhkd.study.state.summary import collect

    spec = parse_spec(fake_spec_tree(tmp_path / "data"))
    paths = StudyPaths(tmp_path / "ray", spec.name)
    study = open_optuna_study(paths, spec)
    study.tell(study.ask(), 0.5)
    study.ask()  # the driver stopped while this trial ran
    rows, _ = collect(paths, spec)
    assert [r["state"] for r in rows] == ["COMPLETE", "INTERRUPTED"]

    def record(msg: str, error: BaseException | None = None) -> logging.LogRecord:
        exc_info = (type(error), error, None) if error else None
        return logging.LogRecord("ray.tune", logging.WARNING, "", 0, msg, (), exc_info)

    noise = _RayNoise()
    hint = "Experiment has been interrupted, ...\nResume experiment with: Tuner.restore(...)"
    assert not noise.filter(record(hint))
    gone = FileNotFoundError("checkpoint_000001")
    assert not noise.filter(record("Trial %s: Error handling checkpoint %s", gone))
    assert noise.filter(record("Trial %s: Error handling checkpoint %s", ValueError("x")))
