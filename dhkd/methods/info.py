"""The registry entry of a method: its name, config, stages, presets and training unit.

Light on purpose (no torch): config validation, the CLI and study specs read it; the unit class
is imported only when a run builds units.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from dhkd.errors import ConfigError
from dhkd.sections import TrainConfig


class Stage(NamedTuple):
    """A training stage: `epochs` calls of the unit's run_epoch(name, epoch), whose mean over
    units is the stage's epoch loss, logged as train/<loss> (progress line, MLflow,
    metrics.json)."""

    name: str
    epochs: int
    loss: str = "loss"


@dataclass(frozen=True)
class MethodInfo:
    """What the registry knows of a method.

    name: the value of `method` in configs and study specs.
    config: a pydantic subclass of dhkd.sections.TrainConfig that adds the method's own
        sections (and `method: Literal[name]`); only these sections belong to the method.
    unit: "module:Class" of its MethodUnit subclass (methods/base.py), imported on first use.
    stages: cfg -> the stages in order; the last one is evaluated and reported per epoch.
    presets: preset name -> {section: {key: value}} of the method's sections for that preset
        (the shared sections come from dhkd.config.PRESETS).
    budget_keys: dotted keys of the method's sections that only set how long it trains; the
        smoke test leaves them to the tiny preset.
    labels: short names of its parameters in report tables, e.g. {"noise.sigma": "σ"}.
    """

    name: str
    description: str
    config: type
    unit: str
    stages: Callable[[Any], tuple[Stage, ...]]
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    budget_keys: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def sections(self) -> tuple[str, ...]:
        """Top-level config sections this method owns (absent from the shared TrainConfig)."""
        return tuple(k for k in self.config.model_fields if k not in TrainConfig.model_fields)

    def final_stage(self, cfg: Any) -> Stage:
        """The last stage: the one evaluated every optim.eval_every epochs and reported."""
        return self.stages(cfg)[-1]

    def unit_class(self) -> type:
        module, _, attr = self.unit.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"method '{self.name}': cannot import its unit {self.unit!r} ({exc}); fix the "
                "unit path of its MethodInfo"
            ) from None
