"""Method dhkd: flow teacher + denoising dual-domain student (METHOD.md, the first seed)."""

from __future__ import annotations

from dhkd.methods.dhkd.config import DHKDConfig
from dhkd.methods.info import MethodInfo, Stage


def _stages(cfg: DHKDConfig) -> tuple[Stage, ...]:
    teacher_epochs = 0 if cfg.teacher.untrained else cfg.teacher.epochs
    return (Stage("teacher", teacher_epochs, "teacher_nll"), Stage("student", cfg.optim.epochs))


METHOD = MethodInfo(
    name="dhkd",
    description="flow teacher, denoising dual-domain CNN student, affinity loss",
    config=DHKDConfig,
    unit="dhkd.methods.dhkd.unit:DHKDUnit",
    stages=_stages,
    presets={
        # studies/real_noise*.yaml: erased patches teach the student to flag defects. A student
        # epoch is 64 samples whatever the train set's size (cookie's 25 images passed over
        # several times, a random 64 of bottle's 200), and five teacher epochs: validation
        # did not lose on either category (reports/README.md).
        "quick": {
            "teacher": {"depth": 8, "epochs": 5},
            "noise": {"mask": "patches", "mode": "replace", "sigma": 1.0, "patch_size": 0.25},
            "optim": {"min_epoch_samples": 64, "max_epoch_samples": 64},
        },
        "paper": {"teacher": {"depth": 8, "epochs": 40}},
        "tiny": {"teacher": {"depth": 2, "epochs": 1}, "student": {"blocks": 1}},
    },
    budget_keys=("teacher.epochs",),
    labels={
        "noise.sigma": "σ",
        "loss.affinity_weight": "λ",
        "loss.affinity_form": "form",
        "teacher.depth": "K",
        "student.kind": "student",
    },
)
