"""Method bikd: bidirectional knowledge distillation (METHOD.md, the second seed)."""

from __future__ import annotations

from dhkd.methods.bikd.config import BiKDConfig
from dhkd.methods.info import MethodInfo, Stage


def _stages(cfg: BiKDConfig) -> tuple[Stage, ...]:
    return (Stage("student", cfg.optim.epochs),)


METHOD = MethodInfo(
    name="bikd",
    description="frozen-backbone teacher, forward student and reverse distiller, augmentation",
    config=BiKDConfig,
    unit="dhkd.methods.bikd.unit:BiKDUnit",
    stages=_stages,
    presets={
        # Erased feature patches instead of pasted image patches, and a student epoch that
        # passes a small train set several times (cookie in reports/README.md).
        "quick": {
            "bikd": {"augment": False, "erase_prob": 1.0},
            "optim": {"min_epoch_samples": 64},
        },
    },
)
