"""Outputs never corrupt state (issue 34): a run folder is the complete new run or untouched, no
command writes over its own input, and every output location is checked before any work.

Each refusal is exit code 2 with exactly one line (`dhkd COMMAND: error: ...`) naming the path
and the fix, without a traceback, and leaves the files it was given as they were (names, bytes,
modification times). One tiny kNN run, trained once for the module, serves every case.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dhkd.cli import main
from dhkd.data.synth import make_synthetic_dataset

CATEGORY = "widget"


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def _train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--category", CATEGORY, "--preset", "tiny",
            "--method", "knn", "--out", str(out), "--quiet", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def trained(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny kNN run folder; copy it (`run` fixture) before anything may change it."""
    out = tmp_path_factory.mktemp("outputs") / "run"
    assert main(_train_argv(synthetic_root, out)) == 0
    return out


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


@pytest.fixture
def unwritable(tmp_path: Path):
    """A folder nothing can be created in (as root, where permissions do not hold: /sys)."""
    if os.geteuid() == 0:
        yield Path("/sys")
        return
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    yield folder
    folder.chmod(0o700)


def _refused(argv: list[str], capsys) -> str:
    """The one error line of a refused command (exit 2, no traceback, nothing on stdout)."""
    rc = main(argv)
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert rc == 2, text
    assert "Traceback" not in text and captured.out == "", text
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def _argparse_error(argv: list[str], capsys) -> str:
    """The error line argparse prints under its usage (exit 2)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


# State case 1: a run folder is either the complete new run or untouched.


def test_a_failed_train_leaves_the_run_it_would_replace_as_it_was(run, tmp_path, capsys):
    few = make_synthetic_dataset(tmp_path / "few", [CATEGORY], image_size=64, n_train=1,
                                 n_test_good=2, n_test_defect=3)  # fmt: skip
    before = _snapshot(run)
    line = _refused(_train_argv(few, run, "--overwrite"), capsys)
    assert line == (
        f"dhkd train: error: category '{CATEGORY}' has 1 train/good image(s): too few to hold "
        "out 20% for validation and train on the rest; add train images, lower "
        "selection.val_fraction or use selection.protocol=test_fold"
    )
    assert _snapshot(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["few", "run"]  # no temporary folder
    assert main(["reproduce", str(run), "--quiet"]) == 0
    assert "reproduced: every metric within 1e-06" in capsys.readouterr().out


def test_train_refuses_an_out_holding_a_run_without_overwrite(run, synthetic_root, capsys):
    before = _snapshot(run)
    line = _refused(_train_argv(synthetic_root, run), capsys)
    assert line == (
        f"dhkd train: error: --out {run} holds a run (checkpoint.pt, config.yaml, "
        "fingerprint.json, ...); pass --overwrite to replace it once the new run completes, "
        "or a new folder"
    )
    assert _snapshot(run) == before


def test_train_refuses_a_folder_holding_other_files(synthetic_root, tmp_path, capsys):
    line = _refused(_train_argv(synthetic_root, synthetic_root), capsys)
    assert line == (
        f"dhkd train: error: --out {synthetic_root} is not empty and holds no run; pass a new "
        "or empty folder"
    )


def test_overwrite_replaces_the_run_whole(run, synthetic_root, tmp_path, capsys):
    (run / "notes.txt").write_text("from the old run\n")
    assert main(_train_argv(synthetic_root, run, "--overwrite", "--seed", "1")) == 0
    names = {p.name for p in run.iterdir()}
    assert names == {"config.yaml", "metrics.json", "fingerprint.json", "checkpoint.pt",
                     f"scores_{CATEGORY}_s1.csv", f"maps_{CATEGORY}_s1.png"}  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# No command writes over its own input.


def test_export_refuses_to_write_over_its_checkpoint(run, capsys):
    checkpoint = run / "checkpoint.pt"
    before = _snapshot(run)
    line = _refused(["export", "--checkpoint", str(checkpoint), "--out", str(checkpoint)], capsys)
    assert line == (
        f"dhkd export: error: --out {checkpoint} would write over the input {checkpoint}; pass "
        "an output outside it"
    )
    assert _snapshot(run) == before


def test_predict_refuses_an_out_inside_its_input_images(run, synthetic_root, tmp_path, capsys):
    images = Path(shutil.copytree(synthetic_root / CATEGORY / "test", tmp_path / "images"))
    before = _snapshot(images / "good")
    argv = ["predict", "--checkpoint", str(run / "checkpoint.pt"), str(images), "--quiet"]
    line = _refused([*argv, "--out", str(images / "good")], capsys)
    assert line == (
        f"dhkd predict: error: --out {images / 'good'} would write over the input {images}; "
        "pass an output outside it"
    )
    assert _snapshot(images / "good") == before


def test_rescore_refuses_to_write_over_a_run_file(run, capsys):
    before = _snapshot(run)
    line = _refused(["rescore", str(run), "--out", str(run / "metrics.json")], capsys)
    assert line == (
        f"dhkd rescore: error: --out {run / 'metrics.json'} would write over the input {run}; "
        "pass an output outside it"
    )
    assert _snapshot(run) == before


def test_reproduce_refuses_to_write_over_the_run_it_reproduces(run, capsys):
    before = _snapshot(run)
    line = _refused(["reproduce", str(run), "--out", str(run), "--quiet"], capsys)
    assert line == (
        f"dhkd reproduce: error: --out {run} would write over the input {run}; pass an output "
        "outside it"
    )
    assert _snapshot(run) == before


def test_reproduce_refuses_an_out_holding_another_run(run, trained, capsys):
    line = _refused(["reproduce", str(trained), "--out", str(run), "--quiet"], capsys)
    assert line == (
        f"dhkd reproduce: error: --out {run} holds a run (checkpoint.pt, config.yaml, "
        "fingerprint.json, ...); pass a new folder"
    )


def test_report_refuses_an_out_over_the_study_files(tmp_path, capsys):
    storage = tmp_path / "ray"
    (storage / "demo").mkdir(parents=True)
    argv = ["report", "demo", "--storage-path", str(storage), "--no-log"]
    line = _refused([*argv, "--out", str(storage / "demo")], capsys)
    assert line == (
        f"dhkd report: error: --out {storage / 'demo'} would write over the input {storage}; "
        "pass an output outside it"
    )
    assert sorted(p.name for p in storage.rglob("*")) == ["demo"]


# Output locations, checked before any work.


def _location_cases(run: Path, data: Path, file: Path, folder: Path, locked: Path):
    """(argv, what the line names, the problem) per command and wrong location."""
    ckpt = str(run / "checkpoint.pt")
    is_file, is_folder = (
        "is a file, not a folder; pass a folder path",
        ("is a folder, not a file; pass a file path"),
    )
    locked_out = locked / "out"
    not_writable = f"is not writable ({locked}); pass a "
    return {
        "train into a file": (_train_argv(data, file), f"--out {file}", is_file),
        "train into an unwritable folder": (
            _train_argv(data, locked_out),
            f"--out {locked_out}",
            not_writable + "folder you can write to",
        ),
        "synth into a file": (["synth", str(file)], f"OUT {file}", is_file),
        "synth into an unwritable folder": (
            ["synth", str(locked_out)],
            f"OUT {locked_out}",
            not_writable + "folder you can write to",
        ),
        "predict into a file": (
            ["predict", "--checkpoint", ckpt, str(data), "--out", str(file)],
            f"--out {file}",
            is_file,
        ),
        "report into a file": (["report", "demo", "--out", str(file)], f"--out {file}", is_file),
        "export into a folder": (
            ["export", "--checkpoint", ckpt, "--out", str(folder)],
            f"--out {folder}",
            is_folder,
        ),
        "export into an unwritable folder": (
            ["export", "--checkpoint", ckpt, "--out", str(locked / "m.onnx")],
            f"--out {locked / 'm.onnx'}",
            not_writable + "file you can write to",
        ),
        "reproduce into a file": (
            ["reproduce", str(run), "--out", str(file), "--quiet"],
            f"--out {file}",
            is_file,
        ),
        "rescore into a folder": (
            ["rescore", str(run), "--out", str(folder)],
            f"--out {folder}",
            is_folder,
        ),
    }


CASE_NAMES = list(_location_cases(Path("r"), Path("d"), Path("f"), Path("o"), Path("l")))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_output_locations_are_checked_first(case, trained, synthetic_root, tmp_path, unwritable,
                                            capsys):  # fmt: skip
    file, folder = tmp_path / "taken.txt", tmp_path / "folder"
    file.write_text("not a folder\n")
    folder.mkdir()
    argv, named, problem = _location_cases(trained, synthetic_root, file, folder, unwritable)[case]
    command = argv[0]
    line = _refused(argv, capsys)
    assert line == f"dhkd {command}: error: {named} {problem}"
    assert file.read_text() == "not a folder\n" and not any(folder.iterdir())


# Files and arguments: one line naming the problem.


def test_an_empty_checkpoint_is_named(tmp_path, capsys):
    empty = tmp_path / "checkpoint.pt"
    empty.touch()
    line = _refused(["predict", "--checkpoint", str(empty), str(tmp_path / "images"), "--out",
                     str(tmp_path / "p")], capsys)  # fmt: skip
    assert line == (
        f"dhkd predict: error: checkpoint {empty} is empty (0 bytes); pass the checkpoint.pt "
        "written by `dhkd train` or kept by a study trial"
    )


def test_a_folder_given_as_checkpoint_is_not_called_missing(run, tmp_path, capsys):
    line = _refused(["export", "--checkpoint", str(run), "--out", str(tmp_path / "m.onnx")],
                    capsys)  # fmt: skip
    assert line == (
        f"dhkd export: error: checkpoint {run} is a folder, not a file; pass the checkpoint.pt "
        f"in it ({run / 'checkpoint.pt'})"
    )


def test_a_folder_given_as_config_or_spec_is_not_called_missing(synthetic_root, tmp_path, capsys):
    train = _train_argv(synthetic_root, tmp_path / "run", "--config", str(tmp_path))
    assert _refused(train, capsys) == (
        f"dhkd train: error: config file {tmp_path} is a folder, not a file; pass a YAML file of "
        "config sections"
    )
    assert _refused(["study", "run", str(tmp_path)], capsys) == (
        f"dhkd study: error: study spec {tmp_path} is a folder, not a file; pass a study YAML file"
    )


def test_reproduce_of_a_missing_folder_says_so(tmp_path, capsys):
    missing = tmp_path / "no-run"
    line = _refused(["reproduce", str(missing), "--quiet"], capsys)
    assert line == (
        f"dhkd reproduce: error: {missing} does not exist, and is not an MLflow run id (32 hex "
        "digits); pass the --out folder of `dhkd train` or the run id of a study trial (from a "
        "report's provenance.csv)"
    )
    assert not (tmp_path / "runs").exists()


def test_method_contradicting_set_method_is_refused(synthetic_root, tmp_path, capsys):
    argv = _train_argv(synthetic_root, tmp_path / "run")
    argv[argv.index("knn")] = "dhkd"
    line = _refused([*argv, "--set", "method=knn"], capsys)
    assert (
        line
        == "dhkd train: error: --method dhkd contradicts --set method=knn; give only one of them"
    )
    assert not (tmp_path / "run").exists()


def test_cluster_check_refuses_a_negative_timeout(capsys):
    line = _argparse_error(["cluster", "check", "--timeout", "-1"], capsys)
    assert (
        line
        == "dhkd cluster check: error: argument --timeout: -1 is negative; give 0 or more seconds"
    )


def _spec(tmp_path: Path, data: Path, extra: str = "") -> Path:
    spec = tmp_path / "studies" / "demo.yaml"
    spec.parent.mkdir(exist_ok=True)
    spec.write_text(
        "name: demo\ndescription: a study of outputs\nmethod: knn\npreset: tiny\n"
        f"data: {{root: {data}, dataset: custom, categories: [{CATEGORY}]}}\n"
        "scientific:\n  seed: {type: categorical, values: [0, 1]}\n"
        f"sampler: {{type: grid, seed: 0}}\nscheduler: {{type: none}}\n{extra}"
    )
    return spec


@pytest.mark.parametrize("where", ["storage path", "feature cache"])
@pytest.mark.parametrize("problem", ["a file", "not writable"])
def test_study_run_checks_its_folders_before_any_trial(where, problem, synthetic_root, tmp_path,
                                                       unwritable, capsys):  # fmt: skip
    file = tmp_path / "taken.txt"
    file.write_text("not a folder\n")
    bad = file if problem == "a file" else unwritable / "out"
    storage = tmp_path / "ray"
    flags = {
        "storage path": ["--storage-path", str(bad)],
        "feature cache": ["--storage-path", str(storage), "--feature-cache", str(bad)],
    }
    argv = ["study", "run", str(_spec(tmp_path, synthetic_root)), *flags[where], "--quiet",
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]  # fmt: skip
    named = {
        "storage path": "--storage-path",
        "feature cache": "the feature cache (--feature-cache)",
    }
    fix = (
        "is a file, not a folder; pass a folder path"
        if problem == "a file"
        else f"is not writable ({unwritable}); pass a folder you can write to"
    )
    assert _refused(argv, capsys) == f"dhkd study: error: {named[where]} {bad} {fix}"
    assert not storage.exists() and not (tmp_path / "mlflow.db").exists()
    assert file.read_text() == "not a folder\n"


def test_study_run_refuses_an_empty_name_and_a_cpu_count_below_one(synthetic_root, tmp_path,
                                                                   capsys):  # fmt: skip
    argv = ["study", "run", str(_spec(tmp_path, synthetic_root)), "--storage-path",
            str(tmp_path / "ray")]  # fmt: skip
    assert _refused([*argv, "--name", ""], capsys) == (
        "dhkd study: error: --name is empty; give a study name, or leave --name out to use the "
        "spec's name (demo)"
    )
    line = _argparse_error([*argv, "--num-cpus", "-1"], capsys)
    assert line == "dhkd study run: error: argument --num-cpus: -1 is not positive; give 1 or more"
    assert not (tmp_path / "ray").exists()


def test_a_message_naming_its_input_does_not_name_it_twice(synthetic_root, tmp_path, capsys):
    spec = _spec(tmp_path, synthetic_root, extra="seeds: [0, 0]\n")
    assert main(["study", "check", str(spec)]) == 2
    text = capsys.readouterr()
    text = text.out + text.err
    assert "'seeds': seeds must be distinct non-negative integers (got [0, 0])" in text
    assert text.count("(got ") == 1 and "Traceback" not in text
