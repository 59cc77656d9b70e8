"""Search-space parameters of a study and the define-by-run function that suggests them.

A parameter is a dotted TrainConfig key (e.g. `noise.sigma`) with a distribution:

    {type: float, low: 0.0, high: 0.5}                   # uniform
    {type: float, low: 1e-4, high: 1e-2, log: true}      # log-uniform
    {type: int, low: 2, high: 16, step: 2}
    {type: categorical, values: [none, spatial, frequency, dual]}

and an optional condition `when: {student.variant: [frequency, dual]}`: the parameter is only
suggested when every named (categorical) parameter took one of the listed values; otherwise the
TrainConfig default (or the study's fixed value) applies. The functions here only suggest values;
the trainable is a plain function of the resulting dict (docs/studies.md).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dhkd.errors import ConfigError

Scalar = str | int | float | bool


class _Param(BaseModel, ABC):
    model_config = ConfigDict(extra="forbid", frozen=True)

    when: dict[str, list[Scalar]] | None = Field(
        None, description="suggest only when each named categorical parameter is in the list"
    )

    @abstractmethod
    def candidates(self) -> list[Any]:
        """Values that bound the distribution (checked against TrainConfig)."""


class FloatParam(_Param):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        if not self.low < self.high:
            raise ValueError(f"empty range: low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        return self

    def candidates(self) -> list[Any]:
        return [self.low, self.high]


class IntParam(_Param):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        if not self.low < self.high:
            raise ValueError(f"empty range: low ({self.low}) must be below high ({self.high})")
        if self.log and (self.low <= 0 or self.step != 1):
            raise ValueError("log scale needs low > 0 and step 1")
        return self

    def candidates(self) -> list[Any]:
        return [self.low, self.high]


class CategoricalParam(_Param):
    type: Literal["categorical"]
    values: list[Scalar] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> CategoricalParam:
        if len({repr(v) for v in self.values}) != len(self.values):
            raise ValueError(f"values must be distinct (got {self.values})")
        return self

    def candidates(self) -> list[Any]:
        return list(self.values)


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


def ordered_keys(space: dict[str, Param]) -> list[str]:
    """Keys with every condition's parent before its children; raises on unknown parents/cycles."""
    for key, param in space.items():
        for parent, allowed in (param.when or {}).items():
            where = f"'{key}'.when"
            if parent not in space:
                raise ConfigError(f"{where}: '{parent}' is not a parameter of the search space")
            parent_param = space[parent]
            if not isinstance(parent_param, CategoricalParam):
                raise ConfigError(f"{where}: '{parent}' must be a categorical parameter")
            unknown = [v for v in allowed if v not in parent_param.values]
            if unknown or not allowed:
                raise ConfigError(
                    f"{where}: {unknown or allowed} not among the values of '{parent}' "
                    f"{parent_param.values}"
                )
    order: list[str] = []
    pending = dict(space)
    while pending:
        ready = [k for k, p in pending.items() if all(q in order for q in (p.when or {}))]
        if not ready:
            raise ConfigError(f"conditions form a cycle among {sorted(pending)}")
        for key in ready:
            order.append(key)
            pending.pop(key)
    return order


def suggest(trial: Any, space: dict[str, Param]) -> dict[str, Any]:
    """Define-by-run: ask an Optuna trial for every active parameter; returns {key: value}."""
    values: dict[str, Any] = {}
    for key in ordered_keys(space):
        param = space[key]
        if any(values.get(p) not in allowed for p, allowed in (param.when or {}).items()):
            continue
        if isinstance(param, FloatParam):
            values[key] = trial.suggest_float(
                key, param.low, param.high, log=param.log, step=param.step
            )
        elif isinstance(param, IntParam):
            values[key] = trial.suggest_int(
                key, param.low, param.high, log=param.log, step=param.step
            )
        else:
            values[key] = trial.suggest_categorical(key, param.values)
    return values


def grid(space: dict[str, Param]) -> dict[str, list[Any]]:
    """Grid values per key for Optuna's GridSampler (categorical, unconditional spaces only)."""
    out: dict[str, list[Any]] = {}
    for key, param in space.items():
        if not isinstance(param, CategoricalParam) or param.when:
            raise ConfigError(
                f"'{key}': the grid sampler needs unconditional categorical parameters; "
                "list the values (type: categorical) or use sampler: tpe / random"
            )
        out[key] = list(param.values)
    return out


def grid_size(space: dict[str, Param]) -> int:
    return math.prod(len(v) for v in grid(space).values()) if space else 1
