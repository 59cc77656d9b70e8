"""A suite file (studies/suites/*.yaml): the studies of a paper with their shared settings.

Example (studies/suites/local.yaml is a complete one):

    name: local                      # prefixes every study name: local-noise_level, ...
    description: The paper's ablations on five real categories, 2 CPU cores.
    data:                            # as a study's data: root(s), dataset, categories
      root: [../../shared/data/mvtec_ad, ../../shared/data/lookout_cookie]
      dataset: custom
      categories: [bottle, cookie]
    seeds: [0, 1]
    selection: {protocol: synthetic, val_fraction: 0.2, seed: 0}
    preset: quick
    reference: knn
    resources: {cpus_per_trial: 2, gpus_per_trial: 0, concurrent_trials: 1, nodes: 1}
    budget: {wall_hours: 8}          # and/or gpu_hours
    costs:                           # seconds per (category, seed) unit, bench_methods.py
      - {method: dhkd, preset: quick, category: bottle, wall_s: 38.0, cpu_s: 72.6}
    studies:
      - ../paper/flow_depth.yaml     # a study file, relative to this file
      - from: ../paper/noise_level.yaml   # a study file with some top-level keys replaced
        num_samples: 8
      - name: knn_only               # or a whole study body inline
        description: ...

The shared keys (data, seeds, selection, preset, reference, resources) replace each study's
own; `expand` turns the suite into the StudySpecs `dhkd study run` would accept, through the
study spec parser itself (dhkd.study.design.spec.parse_spec). Relative data roots resolve as
in a study file: against the parent of the suite file's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dhkd.config import read_yaml
from dhkd.errors import ConfigError
from dhkd.methods.registry import get_method
from dhkd.sections import SelectionConfig
from dhkd.study.design.space import CategoricalParam
from dhkd.study.design.spec import NAME_PATTERN, DataSpec, StudySpec, error_text, parse_spec

FROM = "from"  # an inline entry's key naming the study file it starts from
SHARED = ("data", "seeds", "selection", "preset", "reference")  # replace each study's own
Location = tuple[str | int, ...]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SuiteResources(_Strict):
    cpus_per_trial: float = Field(1.0, gt=0, description="CPUs each trial asks for")
    gpus_per_trial: float = Field(
        0.0, ge=0, description="GPUs each trial asks for (fractions share one)"
    )
    concurrent_trials: int = Field(1, ge=1, description="trials running at once on each node")
    nodes: int = Field(1, ge=1, description="nodes running trials")

    @property
    def slots(self) -> int:
        """Trials running at once over all nodes (each study's budget.max_concurrent)."""
        return self.concurrent_trials * self.nodes


class SuiteBudget(_Strict):
    wall_hours: float | None = Field(None, gt=0, description="the whole suite's wall time")
    gpu_hours: float | None = Field(None, gt=0, description="the whole suite's GPU time")


class CostEntry(_Strict):
    """Seconds per (category, seed) unit of one method at one preset, as
    benchmarks/bench_methods.py measures them (its wall s and CPU s per category)."""

    method: str
    preset: Literal["quick", "paper", "tiny"]
    category: str | None = Field(None, description="omitted: any category (a mean)")
    wall_s: float = Field(gt=0)
    cpu_s: float | None = Field(None, gt=0)
    device: Literal["cpu", "gpu"] = "cpu"

    @field_validator("method")
    @classmethod
    def _registered(cls, method: str) -> str:
        try:
            get_method(method)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return method


class SuiteSpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN, max_length=32)
    description: str = Field(min_length=1)
    data: DataSpec | None = None
    seeds: list[int] | None = Field(None, min_length=1)
    selection: SelectionConfig | None = None
    preset: Literal["quick", "paper", "tiny"] | None = None
    reference: str | None = None
    resources: SuiteResources = SuiteResources()
    budget: SuiteBudget = SuiteBudget()
    costs: list[CostEntry] = Field(default_factory=list)
    studies: list[str | dict[str, Any]] = Field(min_length=1)
    source: str = Field("<suite>", description="the suite file (set by load_suite)")
    lines: dict[Location, int] = Field(default_factory=dict, description="YAML line per key")

    @field_validator("reference")
    @classmethod
    def _reference(cls, method: str | None) -> str | None:
        if method is not None:
            try:
                get_method(method)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return method

    @property
    def folder(self) -> Path:
        return Path(self.source).resolve().parent

    @property
    def base_dir(self) -> Path:
        """Where the suite's relative data roots resolve: its folder's parent, as a study's."""
        return self.folder.parent

    @property
    def device(self) -> str:
        return "gpu" if self.resources.gpus_per_trial > 0 else "cpu"

    def where(self, loc: Location) -> str:
        """`file:line` of the YAML key at loc (or of its closest enclosing key)."""
        for end in range(len(loc), 0, -1):
            if loc[:end] in self.lines:
                return f"{self.source}:{self.lines[loc[:end]]}"
        return self.source


def key_lines(text: str) -> dict[Location, int]:
    """1-based line of every mapping key and sequence item of a YAML text, by its location."""
    found: dict[Location, int] = {}

    def walk(node: yaml.Node, loc: Location) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                here = (*loc, str(key.value))
                found[here] = key.start_mark.line + 1
                walk(value, here)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                found[(*loc, index)] = item.start_mark.line + 1
                walk(item, (*loc, index))

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return found


def _describe(exc: ValidationError, lines: dict[Location, int], source: str) -> str:
    probe = SuiteSpec.model_construct(source=source, lines=lines)
    skip = ("str", "dict[str,any]", "int", "float")
    out = []
    for err in exc.errors():
        where = probe.where(tuple(p for p in err["loc"] if p not in skip))
        out.append(f"{where}: {error_text(err, skip)}")
    return f"invalid suite {source}:\n  " + "\n  ".join(dict.fromkeys(out))


def parse_suite(tree: Any, source: str = "<suite>", lines: dict[Location, int] | None = None):
    """Validate a suite tree (as read from `source`) into a SuiteSpec; a ConfigError names
    every problem with its file:line."""
    lines = lines or {}
    if not isinstance(tree, dict):
        raise ConfigError(f"suite {source} must be a mapping of keys (got {type(tree).__name__})")
    for key in ("source", "lines"):
        if key in tree:
            raise ConfigError(f"{source}:{lines.get((key,), '?')}: unknown key '{key}': remove it")
    try:
        return SuiteSpec.model_validate({**tree, "source": source, "lines": lines})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, lines, source)) from None


def load_suite(path: str | Path) -> SuiteSpec:
    """Read and validate a suite file (the studies it names are read by `expand`)."""
    path = Path(path)
    tree = read_yaml(path, "suite", "pass a suite YAML file, e.g. studies/suites/local.yaml")
    return parse_suite(tree, str(path), key_lines(path.read_text()))


def _study_file(suite: SuiteSpec, ref: Any, loc: Location) -> tuple[dict[str, Any], Path]:
    where = suite.where(loc)
    if not isinstance(ref, str) or not ref:
        raise ConfigError(f"{where}: a study file must be a path (got {ref!r})")
    path = Path(ref).expanduser()
    path = path if path.is_absolute() else suite.folder / path
    tree = read_yaml(path, f"{where}: study file", "give its path relative to the suite file")
    if not isinstance(tree, dict):
        raise ConfigError(f"{where}: study file {path} must hold a mapping of keys")
    return tree, path


def _entry_tree(suite: SuiteSpec, index: int) -> tuple[dict[str, Any], str, Path]:
    """(study tree before the shared keys, its source, the base_dir of its own data roots)."""
    entry, loc = suite.studies[index], ("studies", index)
    if isinstance(entry, str):
        tree, path = _study_file(suite, entry, loc)
        return tree, str(path), path.resolve().parent.parent
    if FROM in entry:
        tree, path = _study_file(suite, entry[FROM], (*loc, FROM))
        rest = {k: v for k, v in entry.items() if k != FROM}
        return {**tree, **rest}, f"{suite.where(loc)} (from {path})", path.resolve().parent.parent
    return dict(entry), suite.where(loc), suite.base_dir


def shared_tree(suite: SuiteSpec, tree: dict[str, Any]) -> dict[str, Any]:
    """A study tree with the suite's name prefix and shared keys in place of its own."""
    out = dict(tree)
    if isinstance(out.get("name"), str):
        out["name"] = f"{suite.name}-{out['name']}"
    for key in SHARED:
        value = getattr(suite, key)
        if value is not None:
            out[key] = (
                value.model_dump(exclude_none=True) if isinstance(value, BaseModel) else value
            )
    res = suite.resources
    out["resources"] = {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial}
    budget = out.get("budget")
    out["budget"] = {**(budget if isinstance(budget, dict) else {}), "max_concurrent": res.slots}
    return out


def expand(suite: SuiteSpec) -> list[StudySpec]:
    """The suite's studies as validated StudySpecs, in order, each named SUITE-STUDY, with the
    suite's shared keys and resources; exactly what `dhkd study run` would accept."""
    specs: list[StudySpec] = []
    seen: dict[str, str] = {}
    for index in range(len(suite.studies)):
        tree, source, own_base = _entry_tree(suite, index)
        base = suite.base_dir if suite.data is not None else own_base
        try:
            spec = parse_spec(shared_tree(suite, tree), source=source, base_dir=base)
        except ConfigError as exc:
            if isinstance(suite.studies[index], str):  # name the suite line that lists it
                raise ConfigError(f"{suite.where(('studies', index))}: {exc}") from None
            raise
        if spec.name in seen:
            raise ConfigError(
                f"{suite.where(('studies', index))}: study name {spec.name} is also the name of "
                f"{seen[spec.name]}; give one of them another `name:`"
            )
        seen[spec.name] = source
        specs.append(spec)
    return specs


def study_methods(spec: StudySpec) -> tuple[str, ...]:
    """The methods a study's trials train: the values of a `method` search parameter, else its
    method."""
    param = spec.space.get("method")
    if isinstance(param, CategoricalParam):
        return tuple(str(v) for v in param.values)
    return (spec.method,)
