"""A study file (studies/*.yaml) validated into a typed, frozen StudySpec.

Example (see studies/quickstart.yaml for a complete one):

    name: noise_level
    description: How much feature noise helps (DHKD's part 3)?
    method: dhkd
    preset: quick
    data: {root: ../shared/data/mvtec_ad, categories: all}
    seeds: [0, 1]
    fixed: {optim.epochs: 20}
    scientific:                  # what the study measures
      noise.sigma: {type: categorical, values: [0.0, 0.1, 0.2, 0.5]}
    nuisance:                    # tuned for every scientific value
      optim.lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
    sampler: {type: tpe, seed: 0}
    objective: {metric: pixel_aupro, mode: max}   # on the validation images of `selection`
    selection: {protocol: synthetic, val_fraction: 0.2, seed: 0}
    reference: knn               # a baseline column, measured once per (category, seed)
    num_samples: 16
    scheduler: {type: asha, grace_period: 5, reduction_factor: 2}
    resources: {cpu: 1, gpu: 0.5}
    budget: {time_s: 36000, gpu_hours: 20, max_concurrent: 2}
    retries: 1
    keep_weights: complete       # trial weights kept in MLflow: complete | all | none

The search space is `scientific` and `nuisance` together. Relative `data.root` paths resolve
against the parent of the spec file's directory (the repository root for studies/*.yaml).
`data.root` may list several roots, with `dataset: custom` for names outside MVTec AD
(`root: [../shared/data/mvtec_ad, ../shared/data/lookout_cookie]`): each category is read from
the one root that holds it.
Unknown keys, wrong types, empty ranges, unknown categories or metrics are ConfigErrors that
name the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dhkd.config import TrainConfig, load_config
from dhkd.errors import ConfigError
from dhkd.methods.registry import DEFAULT_METHOD, get_method
from dhkd.sections import SelectionConfig
from dhkd.study.design.space import Param, grid_size, ordered_keys

MVTEC_CATEGORIES = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)  # fmt: skip
METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticData(_Strict):
    """Generate this dataset (dhkd.data.synth.make_synthetic_dataset) under the storage path."""

    categories: list[str] = Field(min_length=1)
    image_size: int = Field(128, ge=32, le=1024)
    seed: int = Field(0, ge=0)
    n_train: int = Field(24, ge=2)
    n_test_good: int = Field(8, ge=1)
    n_test_defect: int = Field(12, ge=1)
    difficulty: float = Field(
        0.0, ge=0, le=1, description="0: plain; up to 1: more varied good images, fainter defects"
    )


class DataSpec(_Strict):
    root: str | list[str] | None = Field(
        None,
        description="dataset root in MVTec layout, or a list of roots: each category is read "
        "from the one root that holds it",
    )
    dataset: Literal["mvtec_ad", "custom"] = Field(
        "mvtec_ad", description="mvtec_ad: categories must be MVTec AD names; custom: any"
    )
    categories: list[str] | None = Field(None, description="names, one name, or 'all'")
    synthetic: SyntheticData | None = None

    @field_validator("root")
    @classmethod
    def _roots(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError("a list of roots must be non-empty and name each root once")
        return value

    @field_validator("categories", mode="before")
    @classmethod
    def _expand(cls, value: Any) -> Any:
        if value == "all":
            return list(MVTEC_CATEGORIES)
        return [value] if isinstance(value, str) else value

    @field_validator("categories")
    @classmethod
    def _known(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is None:
            return value
        if not value or len(set(value)) != len(value):
            raise ValueError("must be a non-empty list of distinct names, a name, or all")
        unknown = [c for c in value if c not in MVTEC_CATEGORIES]
        if info.data.get("dataset") == "mvtec_ad" and unknown:
            raise ValueError(
                f"unknown category {unknown}: MVTec AD has {', '.join(MVTEC_CATEGORIES)} "
                "(set data.dataset: custom for other data)"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.root is None) == (self.synthetic is None):
            raise ValueError("give exactly one of data.root (with categories) or data.synthetic")
        if self.synthetic is not None:
            if self.categories is not None:
                raise ValueError("with data.synthetic, list categories inside the synthetic block")
            return self
        if not self.categories:
            raise ValueError("data.categories is required with data.root (a list, a name or all)")
        return self

    @property
    def category_names(self) -> list[str]:
        return list(self.synthetic.categories if self.synthetic else self.categories or [])


class SamplerSpec(_Strict):
    type: Literal["tpe", "random", "grid"] = "tpe"
    seed: int | None = Field(0, ge=0)
    n_startup_trials: int = Field(8, ge=0, description="TPE: random trials before modelling")


class ObjectiveSpec(_Strict):
    metric: Literal["image_auroc", "pixel_auroc", "pixel_aupro"] = "pixel_aupro"
    mode: Literal["max", "min"] = "max"


class SchedulerSpec(_Strict):
    type: Literal["asha", "none"] = "asha"
    grace_period: int = Field(1, ge=1, description="epochs before a trial can be stopped")
    reduction_factor: float = Field(2.0, gt=1)


class ResourcesSpec(_Strict):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class BudgetSpec(_Strict):
    time_s: float | None = Field(None, gt=0, description="wall-clock limit for the study")
    gpu_hours: float | None = Field(
        None, gt=0, description="GPU-hours cap: no trial starts that would pass it"
    )
    max_concurrent: int = Field(1, ge=1, description="trials running at once")


class StudySpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field(min_length=1)
    method: str = DEFAULT_METHOD
    preset: Literal["quick", "paper", "tiny"] = "quick"
    data: DataSpec
    seeds: list[int] = Field([0], min_length=1)
    fixed: dict[str, Any] = Field(default_factory=dict)
    scientific: dict[str, Param] = Field(default_factory=dict)
    nuisance: dict[str, Param] = Field(default_factory=dict)
    sampler: SamplerSpec = SamplerSpec()
    objective: ObjectiveSpec = ObjectiveSpec()
    selection: SelectionConfig = Field(
        SelectionConfig(), description="what chooses: synthetic (default), test_fold or test"
    )
    reference: str | None = Field(
        None,
        description="a method measured once per (category, seed) under the same protocol, "
        "shown as its own column of every table (dhkd.study.driver.reference), e.g. knn",
    )
    num_samples: int | None = Field(None, ge=1, description="trials; grid: defaults to its size")
    scheduler: SchedulerSpec = SchedulerSpec()
    resources: ResourcesSpec = ResourcesSpec()
    budget: BudgetSpec = BudgetSpec()
    retries: int = Field(0, ge=0, le=20, description="re-runs of a failing trial")
    keep_weights: Literal["complete", "all", "none"] | None = Field(
        None,
        description="trial weights kept as MLflow artifacts: complete (default: COMPLETE "
        "trials), all (also FAILED trials that finished training, and PRUNED trials' last "
        "snapshot, without a threshold), none",
    )
    base_dir: str = Field(".", description="where relative data paths resolve (set by load_spec)")

    @property
    def weights_kept(self) -> str:
        return self.keep_weights or "complete"

    @field_validator("method", "reference")
    @classmethod
    def _registered(cls, method: str | None) -> str | None:
        if method is None:
            return method
        try:
            get_method(method)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return method

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ValueError(f"seeds must be distinct non-negative integers (got {seeds})")
        return seeds

    @property
    def space(self) -> dict[str, Param]:
        return {**self.scientific, **self.nuisance}

    @property
    def trials(self) -> int:
        """num_samples, or the grid size for a grid sampler without num_samples."""
        if self.num_samples is not None:
            return self.num_samples
        return grid_size(self.space) if self.sampler.type == "grid" else 1

    @property
    def units(self) -> list[tuple[str, int]]:
        """(category, seed) pairs every trial trains, in lockstep."""
        return [(c, s) for c in self.data.category_names for s in self.seeds]

    def data_roots(self) -> list[Path]:
        """data.root as absolute paths (relative ones against base_dir); [] for generated data."""
        roots = self.data.root
        if roots is None:
            return []
        paths = [Path(r).expanduser() for r in ([roots] if isinstance(roots, str) else roots)]
        return [p if p.is_absolute() else (Path(self.base_dir) / p).resolve() for p in paths]

    def data_root(self) -> Path | None:
        """The one dataset root; None for generated data or several roots (which the runner
        joins into one, dhkd/data/join.py)."""
        roots = self.data_roots()
        return roots[0] if isinstance(self.data.root, str) else None

    @property
    def base_overrides(self) -> dict[str, Any]:
        """The method, the selection protocol and the fixed parameters, as dotted overrides of
        the preset."""
        selection = {f"selection.{k}": v for k, v in self.selection.model_dump().items()}
        return {"method": self.method, **selection, **self.fixed}

    def base_config(self) -> TrainConfig:
        """Preset + method + fixed parameters (no search-space values)."""
        return load_config(self.preset, overrides=self.base_overrides)

    def trial_config(self, params: dict[str, Any]) -> TrainConfig:
        """The config of a trial: params (which may change the method) over base_overrides."""
        return load_config(self.preset, overrides={**self.base_overrides, **params})

    def final_epochs(self, params: dict[str, Any] | None = None) -> int:
        """Epochs of the last (reported) stage of the base config, or of a trial's."""
        cfg = self.trial_config(params or {})
        return get_method(cfg.method).final_stage(cfg).epochs


def check_spec(spec: StudySpec) -> StudySpec:
    """Checks that need TrainConfig: fixed keys, every space bound, conditions, grid size."""
    overlap = sorted(set(spec.scientific) & set(spec.nuisance))
    if overlap:
        raise ConfigError(f"{overlap} listed in both scientific and nuisance: keep one")
    chosen_by = sorted(k for k in (*spec.fixed, *spec.space) if k.startswith("selection."))
    if chosen_by:
        raise ConfigError(
            f"{chosen_by}: the selection protocol is one per study (trials chosen on different "
            "images cannot be compared); set it with the top-level `selection:` key"
        )
    fixed_overlap = sorted(set(spec.fixed) & set(spec.space))
    if fixed_overlap:
        raise ConfigError(f"fixed: {fixed_overlap} also in the search space: keep one")
    try:
        base = spec.base_config()
    except ConfigError as exc:
        raise ConfigError(f"fixed: {exc}") from None
    for section in ("scientific", "nuisance"):
        for key, param in getattr(spec, section).items():
            for value in param.candidates():
                try:
                    spec.trial_config({key: value})
                except ConfigError as exc:
                    raise ConfigError(f"{section}.{key} = {value!r}: {exc}") from None
    ordered_keys(spec.space)
    if spec.sampler.type == "grid":
        size = grid_size(spec.space)
        if spec.num_samples is not None and spec.num_samples > size:
            raise ConfigError(f"num_samples: {spec.num_samples} exceeds the grid size {size}")
    if spec.budget.gpu_hours is not None and spec.resources.gpu <= 0:
        raise ConfigError(
            "budget.gpu_hours caps GPU time, but trials ask for no GPU (resources.gpu is 0); "
            "set resources.gpu, or use budget.time_s"
        )
    epochs = spec.final_epochs()
    if spec.scheduler.type == "asha" and spec.scheduler.grace_period >= epochs:
        raise ConfigError(
            f"scheduler.grace_period ({spec.scheduler.grace_period}) must be below the "
            f"{epochs} epochs of method {base.method}'s last stage (optim.epochs for "
            "trained methods), or use scheduler: {type: none}"
        )
    return spec


def error_text(err: dict, skip: tuple[str, ...]) -> str:
    """One pydantic error of a spec as a line: its dotted key (union tags in `skip` left out)
    and what is wrong with it."""
    loc = ".".join(str(p) for p in err["loc"] if p not in skip) or "<root>"
    if err["type"] == "extra_forbidden":
        return f"unknown key '{loc}': remove it or check its spelling"
    if err["type"] == "missing":
        return f"'{loc}': required key is missing"
    msg = err["msg"].removeprefix("Value error, ")
    got = "" if "(got " in msg else f" (got {err.get('input')!r})"
    return f"'{loc}': {msg}{got}"


def describe_spec_error(exc: ValidationError, source: str) -> str:
    lines = [error_text(err, ("float", "int", "categorical")) for err in exc.errors()]
    return f"invalid study spec {source}:\n  " + "\n  ".join(lines)


def parse_spec(tree: Any, source: str = "<spec>", base_dir: str | Path = ".") -> StudySpec:
    if not isinstance(tree, dict):
        raise ConfigError(f"study spec {source} must be a mapping of keys (got {type(tree)})")
    if "base_dir" in tree:
        raise ConfigError(f"unknown key 'base_dir' in {source}: it is set from the file location")
    if "studies" in tree:
        raise ConfigError(
            f"{source} is a suite (it lists `studies:`), not a study spec: plan and run it with "
            f"`dhkd suite plan {source}` and `dhkd suite run {source}` (docs/suites.md)"
        )
    try:
        spec = StudySpec.model_validate({**tree, "base_dir": str(base_dir)})
    except ValidationError as exc:
        raise ConfigError(describe_spec_error(exc, source)) from None
    try:
        return check_spec(spec)
    except ConfigError as exc:
        raise ConfigError(f"invalid study spec {source}: {exc}") from None


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study file; relative data roots resolve against its folder's parent."""
    from dhkd.config import read_yaml

    path = Path(path)
    tree = read_yaml(path, "study spec", "pass a study YAML file")
    return parse_spec(tree, source=str(path), base_dir=path.resolve().parent.parent)


def spec_tree(spec: StudySpec) -> dict[str, Any]:
    """The spec as plain data (for snapshots and hashing), without base_dir."""
    return spec.model_dump(mode="json", exclude={"base_dir"}, exclude_none=True)


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}


EXTENSIBLE = ("num_samples", "seeds", "data.categories", "data.synthetic.categories")


def spec_differences(old: StudySpec, new: StudySpec) -> tuple[list[str], list[str]]:
    """(extensions, other changes) from `old` to `new`, each as "key: old -> new" lines.

    Extensions are what `--extend` accepts: more trials (num_samples, or the grid size it
    defaults to), more seeds, more categories, each keeping every old value."""
    a, b = _flat(spec_tree(old)), _flat(spec_tree(new))
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    extensions, others = [], []
    for key in changed:
        line = f"{key}: {a.get(key)!r} -> {b.get(key)!r}"
        if key == "num_samples":
            grows = new.trials > old.trials
        elif key in EXTENSIBLE:
            before, after = a.get(key) or [], b.get(key) or []
            grows = set(before) < set(after)
        else:
            grows = False
        (extensions if grows else others).append(line)
    return extensions, others
