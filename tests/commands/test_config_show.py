"""`dhkd config show`: the configuration `dhkd train` would resolve from the same arguments."""

from __future__ import annotations

import pytest
import yaml

from dhkd.cli import main
from dhkd.config import PRESETS, config_yaml, load_config
from dhkd.methods.registry import get_method


def _show(capsys, *args: str) -> dict:
    assert main(["config", "show", *args]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_bikd_quick_shows_bikds_section_with_the_presets_values(capsys):
    shown = _show(capsys, "--method", "bikd", "--preset", "quick")
    assert shown["method"] == "bikd" and "teacher" not in shown and "knn" not in shown
    assert shown["bikd"]["erase_prob"] == 1.0 and shown["bikd"]["forward_weight"] == 0.5
    assert shown["bikd"]["augment"] is False
    for section, values in get_method("bikd").presets["quick"].items():
        assert {k: shown[section][k] for k in values} == values
    assert shown["optim"]["epochs"] == PRESETS["quick"]["optim"]["epochs"]


def test_tiny_preset_and_the_default_method(capsys):
    shown = _show(capsys, "--preset", "tiny")
    assert shown["method"] == "dhkd" and "teacher" in shown
    assert shown["optim"]["epochs"] == PRESETS["tiny"]["optim"]["epochs"]


def test_file_then_set_then_shortcuts_as_dhkd_train_applies_them(capsys, tmp_path):
    file = tmp_path / "run.yaml"
    file.write_text("optim:\n  lr: 0.005\n  batch_size: 4\nseed: 3\n")
    args = ["--method", "knn", "--preset", "tiny", "--config", str(file)]
    args += ["--set", "optim.lr=0.002", "--seed", "7", "--selection", "test"]
    out = _show(capsys, *args)
    assert out["optim"]["lr"] == 0.002 and out["optim"]["batch_size"] == 4  # --set over the file
    assert out["seed"] == 7 and out["selection"]["protocol"] == "test"
    expected = load_config(
        "tiny",
        file,
        {"method": "knn", "optim.lr": 0.002, "seed": 7, "selection.protocol": "test"},
    )
    assert out == yaml.safe_load(config_yaml(expected))  # the config.yaml a run writes


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.nope=1", "unknown key 'optim.nope'"),
        ("bikd.erase_prob=1", "belongs to method 'bikd'"),
        ("optim.lr=-1", "'optim.lr'"),
    ],
)
def test_a_bad_key_or_value_is_a_one_line_error_with_exit_2(capsys, override, message):
    assert main(["config", "show", "--set", override]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("dhkd config: error: invalid config: ") and message in line


def test_an_unknown_preset_is_an_error(capsys):
    assert main(["config", "show", "--preset", "fast"]) == 2
    assert "unknown preset 'fast'" in capsys.readouterr().err
