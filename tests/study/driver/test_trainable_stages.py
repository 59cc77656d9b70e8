"""A trial interrupted after DHKD's teacher stage resumes from the teacher checkpoint: the teacher
is not trained again and the result equals an uninterrupted trial's. Tune's report/checkpoint
functions are replaced by an in-memory stand-in (no Ray session needed)."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest

from dhkd.methods.dhkd.unit import DHKDUnit
from dhkd.study.driver.trainable import (
    FINAL_FILE,
    STAGE_DONE,
    STAGE_LOSSES,
    TrialContext,
    run_trial,
)
from dhkd.training.fit import fit_units


class _Interrupted(Exception):
    pass


class _FakeTune:
    """Keeps every reported result and a copy of the last checkpoint folder."""

    def __init__(self, tmp: Path, restore_from: Path | None = None) -> None:
        self.tmp, self.restore_from = tmp, restore_from
        self.results: list[dict] = []
        self.last: Path | None = None

    def report(self, metrics, checkpoint=None):
        self.results.append(dict(metrics))
        if checkpoint is not None:
            self.last = self.tmp / f"ckpt{len(self.results)}"
            shutil.copytree(checkpoint.path, self.last)

    def get_checkpoint(self):
        from ray import tune

        if self.restore_from is None:
            return None
        return tune.Checkpoint.from_directory(self.restore_from)


class _Node:
    def get_node_id(self) -> str:
        return "n0"


@pytest.fixture
def fake_tune(monkeypatch, tmp_path):
    import ray
    from ray import tune

    monkeypatch.setattr(ray, "get_runtime_context", lambda: _Node())

    def install(restore_from=None):
        folder = tmp_path / f"attempt{len(list(tmp_path.glob('attempt*')))}"
        folder.mkdir()
        fake = _FakeTune(folder, restore_from)
        monkeypatch.setattr(tune, "report", fake.report)
        monkeypatch.setattr(tune, "get_checkpoint", fake.get_checkpoint)
        return fake

    return install


def _stop_in_first_student_epoch(cfg, data_root, units, *, callback=None, **kwargs):
    def stop(report):
        raise _Interrupted

    return fit_units(cfg, data_root, units, callback=stop, **kwargs)


@pytest.mark.slow
def test_resumed_trial_does_not_train_its_teacher_again(
    synthetic_root, tmp_path, fake_tune, monkeypatch
):
    teacher_epochs = []
    original = DHKDUnit._teacher_epoch

    def counting(self, epoch):
        teacher_epochs.append(epoch)
        return original(self, epoch)

    monkeypatch.setattr(DHKDUnit, "_teacher_epoch", counting)
    context = TrialContext(
        preset="tiny",
        base_overrides={"method": "dhkd", "teacher.epochs": 2, "optim.epochs": 2},
        data_root=str(synthetic_root),
        units=[("stripes", 0)],
        metric="pixel_aupro",
        feature_cache_dir=str(tmp_path / "features"),
    )
    config = {"trial_number": 0, "params": {}}

    first = fake_tune()
    with pytest.raises(_Interrupted):
        run_trial(config, dataclasses.replace(context, fit_fn=_stop_in_first_student_epoch))
    assert teacher_epochs == [1, 2]
    assert [r[STAGE_DONE] for r in first.results] == ["teacher"]
    assert "epoch" not in first.results[0]
    nll = json.loads(first.results[0][STAGE_LOSSES])["train/teacher_nll"]
    assert len(nll) == 2 and all(math.isfinite(v) for v in nll)

    resumed = fake_tune(restore_from=first.last)
    run_trial(config, context)
    assert teacher_epochs == [1, 2]  # not trained again
    final = resumed.results[-1]
    assert final["finished"] == 1 and (resumed.last / FINAL_FILE).is_file()

    fresh = fake_tune()
    run_trial(config, context)
    assert teacher_epochs == [1, 2, 1, 2]
    for key in ("test/stripes/image_auroc", "val/stripes/pixel_auroc", "test/stripes/pixel_aupro"):
        assert final[key] == pytest.approx(fresh.results[-1][key], abs=1e-6)
