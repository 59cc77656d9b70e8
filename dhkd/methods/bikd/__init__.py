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
)
