"""MethodUnit.state_dict / load_state_dict: the keys each method's training state has always had,
and a state restored into a fresh unit gives the same state back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dhkd.config import load_config
from dhkd.errors import TrainingError
from dhkd.features import CachedSplit
from dhkd.methods.registry import make_unit

CPU = torch.device("cpu")
COMMON = {"method", "category", "seed", "epoch", "train_seconds", "model", "generator"}
KEYS = {
    "dhkd": COMMON | {"teacher_done", "teacher_opt", "student_opt", "noise_generator"},
    "bikd": COMMON | {"optimizer", "augment_generator", "erase_generator"},
    "knn": COMMON,
}


def _split(n: int = 12, size: int = 64) -> CachedSplit:
    gen = torch.Generator().manual_seed(0)
    return CachedSplit(
        features=[
            torch.randn(n, 8, 8, 8, generator=gen).half(),
            torch.randn(n, 16, 4, 4, generator=gen).half(),
        ],
        images=np.zeros((n, size, size, 3), dtype=np.uint8),
        labels=np.zeros(n, dtype=np.int64),
        masks=np.zeros((n, size, size), dtype=np.uint8),
        paths=tuple(f"{i}.png" for i in range(n)),
    )


def _trained(method: str):
    more = {"bikd.augment": False} if method == "bikd" else {}  # no backbone: random features
    cfg = load_config("tiny", overrides={"method": method, "optim.batch_size": 4, **more})
    split = _split()
    unit = make_unit(cfg, "widget", 0, split, CPU)
    for stage in ("teacher",) if method == "dhkd" else ():
        unit.run_epoch(stage, 1)
        unit.finish_stage(stage)
    unit.run_epoch("fit" if method == "knn" else "student", 1)
    return cfg, split, unit


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dhkd", "bikd", "knn"])
def test_training_state_keeps_its_keys_and_round_trips(method):
    cfg, split, unit = _trained(method)
    state = unit.state_dict()
    assert set(state) == KEYS[method] and state["method"] == method
    fresh = make_unit(cfg, "widget", 0, split, CPU)
    fresh.load_state_dict(state)
    assert _same(fresh.state_dict(), state)
    if method == "dhkd":
        assert fresh.stage_done("teacher") and len(fresh.train_targets) == 2


@pytest.mark.slow
def test_a_state_without_a_later_generator_keeps_its_seeded_state():
    cfg, split, unit = _trained("bikd")
    state = unit.state_dict()
    del state["erase_generator"]
    fresh = make_unit(cfg, "widget", 0, split, CPU)
    seeded = fresh.erase_generator.get_state()
    fresh.load_state_dict(state)
    assert torch.equal(fresh.erase_generator.get_state(), seeded)


def test_a_state_of_another_method_or_unit_is_refused():
    _, _, unit = _trained("knn")
    state = unit.state_dict()
    cfg, split, other = _trained("bikd")
    with pytest.raises(TrainingError, match="not a bikd checkpoint"):
        other.load_state_dict(state)
    wrong_seed = {**other.state_dict(), "seed": 1}
    with pytest.raises(TrainingError, match="not widget/seed0"):
        make_unit(cfg, "widget", 0, split, CPU).load_state_dict(wrong_seed)
