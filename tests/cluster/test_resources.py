"""A spec's `resources` (fractional GPUs included) become the Tune trial's resource request, and
the runner refuses a cluster where no node can hold one trial. No GPU and no Ray instance
needed: Tune's Tuner and Ray's node list are replaced by recorders. (test_multinode.py runs
two half-GPU trials at once on a node that declares one GPU.)"""

from __future__ import annotations

import pytest
from ray import tune

from dhkd.errors import ConfigError
from dhkd.study.design.spec import parse_spec
from dhkd.study.driver import runner
from dhkd.study.driver.trainable import TrialContext
from dhkd.study.state.layout import StudyPaths


def _spec(resources: dict):
    return parse_spec({
        "name": "res",
        "description": "resource mapping",
        "preset": "tiny",
        "data": {"synthetic": {"categories": ["stripes"]}},
        "scientific": {"noise.sigma": {"type": "categorical", "values": [0.0, 0.2]}},
        "scheduler": {"type": "none"},
        "resources": resources,
    })  # fmt: skip


@pytest.mark.parametrize(
    ("resources", "expected"),
    [({"cpu": 2, "gpu": 0.25}, {"CPU": 2.0, "GPU": 0.25}), ({"cpu": 0.5}, {"CPU": 0.5})],
)
def test_spec_resources_become_the_trial_request(tmp_path, monkeypatch, resources, expected):
    seen = {}

    class RecordingTuner:
        @staticmethod
        def can_restore(path) -> bool:
            return False

        def __init__(self, trainable, **kwargs) -> None:
            seen["trainable"], seen["tune_config"] = trainable, kwargs["tune_config"]

    def with_parameters(fn, **kwargs):  # the real one puts kwargs into Ray's object store
        def trainable(config):
            return fn(config, **kwargs)

        return trainable

    monkeypatch.setattr(tune, "Tuner", RecordingTuner)
    monkeypatch.setattr(tune, "with_parameters", with_parameters)
    spec = _spec(resources)
    context = TrialContext("tiny", {}, str(tmp_path), [("stripes", 0)], "pixel_aupro", None)
    runner._tuner(spec, StudyPaths(tmp_path, spec.name), context, quiet=True)
    request = seen["trainable"]._resources  # a PlacementGroupFactory: one bundle per trial
    assert request.required_resources == expected
    assert request.bundles == [expected]
    assert seen["tune_config"].num_samples == spec.trials


def _nodes(*resources: dict):
    return lambda: [{"Alive": True, "Resources": r} for r in resources]


def test_a_node_with_a_gpu_holds_fractional_gpu_trials(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "nodes", _nodes({"CPU": 8.0}, {"CPU": 4.0, "GPU": 1.0}))
    runner.check_resources(_spec({"cpu": 1, "gpu": 0.25}))  # fits the second node
    monkeypatch.setattr(ray, "nodes", _nodes({"CPU": 8.0}, {"CPU": 0.5, "GPU": 1.0}))
    with pytest.raises(ConfigError, match=r"no Ray node has the 1 CPU / 0.25 GPU"):
        runner.check_resources(_spec({"cpu": 1, "gpu": 0.25}))  # CPU here, GPU there
    monkeypatch.setattr(ray, "nodes", _nodes({"CPU": 2.0}))
    with pytest.raises(ConfigError, match=r"resources\.gpu"):
        runner.check_resources(_spec({"cpu": 1, "gpu": 0.5}))
