"""Typed, validated training configuration for one run of a method on one category.

Every design choice that is ours rather than the DHKD paper's (see METHOD.md, "Adopted design")
is a field here, so that a study can ablate it. Unknown keys and wrong types are errors that name
the key. Configs are frozen; build a changed copy with `apply_overrides`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dhkd.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class DataConfig(_Section):
    image_size: int = Field(256, ge=32, le=1024, description="square input size in pixels")
    max_train_images: int | None = Field(None, ge=1, description="cap on train/good images")


BackboneName = Literal["efficientnet_lite0", "resnet18", "wide_resnet50_2", "tiny"]


class BackboneConfig(_Section):
    name: BackboneName = "efficientnet_lite0"
    levels: tuple[int, ...] = Field(
        (2, 3), description="feature levels by stride: 1 = stride 4, 2 = stride 8, 3 = 16, 4 = 32"
    )
    pretrained: bool = Field(True, description="ImageNet weights; false = random init (tests)")
    weights: str | None = Field(None, description="path to a state dict for the backbone")
    feature_norm: Literal["train_stats", "layernorm", "none"] = "train_stats"

    @model_validator(mode="after")
    def _levels_valid(self) -> BackboneConfig:
        if not self.levels or len(set(self.levels)) != len(self.levels):
            raise ValueError("backbone.levels must be a non-empty list of distinct levels")
        if any(lv not in (1, 2, 3, 4) for lv in self.levels):
            raise ValueError("backbone.levels entries must be in 1..4 (stride 4, 8, 16, 32)")
        return self


class TeacherConfig(_Section):
    depth: int = Field(8, ge=1, le=32, description="AllInOneBlock couplings per level (K)")
    clamp: float = Field(2.0, gt=0, le=10)
    hidden_ratio: float = Field(1.0, gt=0, le=8, description="subnet width / feature channels")
    pos_enc: bool = Field(False, description="condition couplings on a positional encoding")
    pos_enc_dim: int = Field(16, ge=2, le=128)
    epochs: int = Field(10, ge=0, le=1000)
    lr: float = Field(2e-4, gt=0)


class NoiseConfig(_Section):
    sigma: float = Field(0.2, ge=0, le=2, description="std of feature noise (unit-RMS features)")
    mask: Literal["full", "patches"] = "full"
    patch_size: float = Field(0.125, gt=0, le=1, description="patch side, fraction of the map")
    patch_count: int = Field(4, ge=1, le=64)
    prob: float = Field(1.0, ge=0, le=1, description="probability a sample is noised")


class StudentConfig(_Section):
    kind: Literal["cnn", "flow"] = Field("cnn", description="flow = heterogeneity ablation")
    variant: Literal["none", "spatial", "frequency", "dual"] = "dual"
    blocks: int = Field(2, ge=0, le=16, description="dual-domain blocks per level")
    freq_branch: Literal["conv1x1", "global_filter"] = "conv1x1"
    hidden_ratio: float = Field(1.0, gt=0, le=8)
    flow_depth: int = Field(8, ge=1, le=32, description="depth when kind = flow")


class LossConfig(_Section):
    kd: Literal["mse", "cosine"] = "mse"
    affinity_weight: float = Field(0.1, ge=0, le=100, description="lambda for the affinity loss")
    affinity_form: Literal["cosine", "dot"] = "cosine"
    affinity_pool: int = Field(16, ge=2, le=64, description="pool maps to at most this side")


class ScoreConfig(_Section):
    fusion: Literal["sum", "product"] = "sum"
    pooling: Literal["max", "mean", "topk"] = "max"
    topk_fraction: float = Field(0.01, gt=0, le=1)
    smoothing_sigma: float = Field(4.0, ge=0, le=32)


class OptimConfig(_Section):
    epochs: int = Field(20, ge=1, le=10000, description="student epochs")
    batch_size: int = Field(16, ge=1, le=1024)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    eval_every: int = Field(5, ge=1, description="evaluate (and report) every N student epochs")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(True, description="mixed precision on CUDA (ignored on CPU)")


class BikdConfig(_Section):
    """Bidirectional KD (method bikd, models/bikd.py); each field is our reading of the abstract."""

    direction: Literal["both", "forward", "backward"] = Field(
        "both", description="distillation paths in use (the weights set their strength)"
    )
    forward_weight: float = Field(1.0, ge=0, le=100, description="teacher -> student distillation")
    backward_weight: float = Field(1.0, ge=0, le=100, description="student -> teacher side")
    forward_width: int = Field(32, ge=4, le=512, description="base width of the forward student")
    forward_mse_weight: float = Field(0.0, ge=0, le=100, description="MSE added to 1 - cosine")
    bottleneck_ratio: float = Field(0.5, gt=0, le=4, description="embedding width / sum(C_l)")
    bottleneck_stride: Literal[1, 2] = Field(2, description="embedding at coarsest level / this")
    augment: bool = Field(True, description="anomaly-simulating augmentation at image level")
    augment_prob: float = Field(0.25, ge=0, le=1, description="probability a sample is augmented")
    augment_kind: Literal["noise", "texture", "both"] = "both"
    augment_max_patches: int = Field(2, ge=1, le=16, description="patches per augmented image")
    augment_min_size: float = Field(0.05, gt=0, le=1, description="patch side / image side")
    augment_max_size: float = Field(0.25, gt=0, le=1, description="patch side / image side")
    augment_min_opacity: float = Field(0.5, gt=0, le=1, description="blend of pasted patches")

    @property
    def active_forward_weight(self) -> float:
        """The forward path's weight in use: 0 when direction is backward."""
        return 0.0 if self.direction == "backward" else self.forward_weight

    @property
    def active_backward_weight(self) -> float:
        """The backward path's weight in use: 0 when direction is forward."""
        return 0.0 if self.direction == "forward" else self.backward_weight

    @model_validator(mode="after")
    def _consistent(self) -> BikdConfig:
        if self.active_forward_weight == 0 and self.active_backward_weight == 0:
            raise ValueError(
                "no distillation path left: bikd.forward_weight and bikd.backward_weight cannot "
                f"both be 0, and direction {self.direction!r} needs its path's weight above 0"
            )
        if self.augment_min_size > self.augment_max_size:
            raise ValueError(
                f"bikd.augment_min_size ({self.augment_min_size}) must not exceed "
                f"bikd.augment_max_size ({self.augment_max_size})"
            )
        return self


class TrainConfig(_Section):
    method: Literal["dhkd", "bikd"] = "dhkd"
    seed: int = Field(0, ge=0)
    data: DataConfig = DataConfig()
    backbone: BackboneConfig = BackboneConfig()
    teacher: TeacherConfig = TeacherConfig()
    noise: NoiseConfig = NoiseConfig()
    student: StudentConfig = StudentConfig()
    loss: LossConfig = LossConfig()
    score: ScoreConfig = ScoreConfig()
    optim: OptimConfig = OptimConfig()
    bikd: BikdConfig = BikdConfig()

    def to_flat_dict(self) -> dict[str, Any]:
        """Dotted keys -> values, e.g. {"teacher.depth": 8}; for tracking params."""
        return flatten(self.model_dump(mode="json"))


PRESETS: dict[str, dict[str, Any]] = {
    # Offline, 2 CPU cores, minutes per category.
    "quick": {
        "data": {"image_size": 256},
        "backbone": {"name": "efficientnet_lite0", "levels": [2, 3]},
        "teacher": {"depth": 8, "epochs": 10},
        "optim": {"epochs": 20, "batch_size": 16, "eval_every": 5},
    },
    # METHOD.md defaults: WideResNet50-2 layers 1-3 at 256 px.
    "paper": {
        "data": {"image_size": 256},
        "backbone": {"name": "wide_resnet50_2", "levels": [1, 2, 3]},
        "teacher": {"depth": 8, "epochs": 40},
        "optim": {"epochs": 100, "batch_size": 16, "eval_every": 10},
    },
    # Random-init tiny network for unit tests and smoke runs.
    "tiny": {
        "data": {"image_size": 64},
        "backbone": {"name": "tiny", "levels": [2, 3], "pretrained": False},
        "teacher": {"depth": 2, "epochs": 1},
        "student": {"blocks": 1},
        "optim": {"epochs": 2, "batch_size": 8, "eval_every": 1},
    },
}


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set tree["a"]["b"] = value for key "a.b"; unknown sections are left for validation."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"'{key}': '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """["teacher.depth=4", "student.variant=none"] -> {"teacher.depth": 4, ...} (YAML-typed)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{item}' must look like key=value, e.g. teacher.depth=4")
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return out


def build_config(tree: dict[str, Any]) -> TrainConfig:
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key '{loc}': remove it or check its spelling")
        else:
            got = err.get("input")
            lines.append(f"'{loc}': {err['msg']} (got {got!r})")
    return "invalid config:\n  " + "\n  ".join(lines)


def load_config(
    preset: str = "quick",
    file: str | Path | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
) -> TrainConfig:
    """Preset, then a YAML file, then dotted overrides; validated once at the end."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}': choose one of {sorted(PRESETS)}")
    tree = copy.deepcopy(PRESETS[preset])
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
        for key, value in flatten(loaded).items():
            set_dotted(tree, key, value)
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    for key, value in (overrides or {}).items():
        set_dotted(tree, key, value)
    return build_config(tree)


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    tree = cfg.model_dump(mode="json")
    for key, value in overrides.items():
        set_dotted(tree, key, value)
    return build_config(tree)


def dump_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
