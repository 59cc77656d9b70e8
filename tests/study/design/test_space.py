"""Search space: conditional parameters are only suggested when their condition holds."""

from __future__ import annotations

import optuna
import pytest

from dhkd.errors import ConfigError
from dhkd.study.design.space import grid, grid_size, suggest
from dhkd.study.design.spec import parse_spec

SPACE = {
    "student.variant": {"type": "categorical", "values": ["none", "spatial", "frequency", "dual"]},
    "student.freq_branch": {
        "type": "categorical",
        "values": ["conv1x1", "global_filter"],
        "when": {"student.variant": ["frequency", "dual"]},
    },
    "optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "student.blocks": {"type": "int", "low": 1, "high": 4},
}


def _spec(space, **changes):
    tree = {"name": "s", "description": "d", "data": {"root": "/x", "categories": ["bottle"]},
            "nuisance": space, **changes}  # fmt: skip
    return parse_spec(tree)


def test_conditional_parameter_follows_its_parent():
    spec = _spec(SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        values = suggest(trial, spec.space)
        study.tell(trial, 0.0)
        seen.add(values["student.variant"])
        assert ("student.freq_branch" in values) == (
            values["student.variant"] in ("frequency", "dual")
        )
        assert 1e-4 <= values["optim.lr"] <= 1e-2 and 1 <= values["student.blocks"] <= 4
        spec.trial_config(values)  # every suggestion is a valid TrainConfig
    assert seen == {"none", "spatial", "frequency", "dual"}


def test_condition_cycles_and_non_categorical_parents_are_errors():
    with pytest.raises(ConfigError, match="categorical"):
        _spec(
            {
                "optim.lr": SPACE["optim.lr"],
                "student.blocks": {**SPACE["student.blocks"], "when": {"optim.lr": [0.1]}},
            }
        )
    with pytest.raises(ConfigError, match="cycle"):
        _spec(
            {
                "student.variant": {
                    **SPACE["student.variant"],
                    "when": {"student.freq_branch": ["conv1x1"]},
                },
                "student.freq_branch": SPACE["student.freq_branch"],
            }
        )


def test_grid_needs_categorical_parameters_and_counts_points():
    spec = _spec(
        {
            "teacher.depth": {"type": "categorical", "values": [2, 4, 8]},
            "loss.kd": {"type": "categorical", "values": ["mse", "cosine"]},
        },
        sampler={"type": "grid"},
    )
    assert spec.trials == grid_size(spec.space) == 6
    assert grid(spec.space) == {"teacher.depth": [2, 4, 8], "loss.kd": ["mse", "cosine"]}
    with pytest.raises(ConfigError, match="grid"):
        _spec({"optim.lr": SPACE["optim.lr"]}, sampler={"type": "grid"})
