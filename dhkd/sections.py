"""The config sections every method shares, and the base of every method's config.

A run's config (TrainConfig) is the shared sections below plus the sections of its method
(methods/<name>/config.py adds them in a subclass). Every design choice that is ours rather than a
paper's is a field, so that a study can ablate it. Unknown keys and wrong types are errors that
name the key; configs are frozen (build a changed copy with dhkd.config.apply_overrides).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    """A frozen config section; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class DataConfig(Section):
    image_size: int = Field(256, ge=32, le=1024, description="square input size in pixels")
    max_train_images: int | None = Field(None, ge=1, description="cap on train/good images")


BackboneName = Literal["efficientnet_lite0", "resnet18", "wide_resnet50_2", "tiny"]


class BackboneConfig(Section):
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


class ScoreConfig(Section):
    fusion: Literal["sum", "product"] = "sum"
    pooling: Literal["max", "mean", "topk"] = "max"
    topk_fraction: float = Field(0.01, gt=0, le=1)
    pool: Literal["fused", "levels"] = Field(
        "fused",
        description="fused: pool the fused map's pixels; levels: pool each level's smoothed map "
        "on its own and fuse the level scores as the maps are fused, so that each level's "
        "strongest region counts whole",
    )
    smoothing_sigma: float = Field(4.0, ge=0, le=32)
    level_norm: Literal["none", "train_mean"] = Field(
        "none",
        description="train_mean: before fusion, divide each level's map by its mean over train "
        "images, so that the levels weigh equally whatever the scale of their distances",
    )

    def fusion_args(self) -> dict:
        """The keyword arguments of models.anomaly_map.score_maps (level_norm is applied
        before it, by the unit that holds the divisors)."""
        return self.model_dump(exclude={"level_norm"})


class OptimConfig(Section):
    epochs: int = Field(20, ge=1, le=10000, description="epochs of the last (evaluated) stage")
    batch_size: int = Field(16, ge=1, le=1024)
    min_epoch_samples: int = Field(
        0,
        ge=0,
        le=100000,
        description="an epoch of the last stage draws at least this many train samples: a "
        "smaller train set is passed over several times (each pass reshuffled); 0 = one pass",
    )
    max_epoch_samples: int = Field(
        0,
        ge=0,
        le=100000,
        description="an epoch of the last stage draws at most this many train samples: a "
        "random subset of a larger train set, drawn anew each epoch; 0 = no cap. Equal to "
        "min_epoch_samples, every category gets the same number of steps whatever its size",
    )
    lr: float = Field(1e-3, gt=0)
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="learning rate over the epochs of the last stage: constant, or cosine "
        "(epoch e of E trains at lr * (1 + cos(pi * (e - 1) / E)) / 2)",
    )
    weight_decay: float = Field(1e-5, ge=0)
    eval_every: int = Field(
        5, ge=1, description="evaluate (and report) every N epochs of the last stage"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(True, description="mixed precision on CUDA (ignored on CPU)")

    @model_validator(mode="after")
    def _epoch_samples_consistent(self) -> OptimConfig:
        if 0 < self.max_epoch_samples < self.min_epoch_samples:
            raise ValueError(
                f"optim.max_epoch_samples ({self.max_epoch_samples}) is below "
                f"optim.min_epoch_samples ({self.min_epoch_samples}): raise it, or set it to 0 "
                "for no cap"
            )
        return self


class ThresholdConfig(Section):
    """How the good/defective threshold stored with the weights is chosen (dhkd/threshold.py)."""

    mode: Literal["f1_max", "fpr", "good_sigma", "between"] = Field(
        "between",
        description="f1_max: best F1 on the validation images; fpr: target_fpr; good_sigma: "
        "mean + sigmas x standard deviation of the good validation images' scores; between: "
        "`fraction` of the way from the good validation images' mean score to the f1_max "
        "threshold",
    )
    target_fpr: float = Field(
        0.05, gt=0, lt=1, description="mode fpr: largest share of good images called defective"
    )
    sigmas: float = Field(
        3.0,
        ge=0,
        allow_inf_nan=False,
        description="mode good_sigma: standard deviations (ddof 1) of the good validation images' "
        "scores above their mean; needs at least 2 good validation images",
    )
    fraction: float = Field(
        0.4,
        ge=0,
        le=1,
        description="mode between: where the threshold lies from the good validation images' "
        "mean score (0) to the f1_max threshold (1)",
    )


SelectionProtocol = Literal["synthetic", "test_fold", "test"]


class SelectionConfig(Section):
    """Which images choose (per-epoch validation, objective, ASHA, report columns) and which are
    only reported (docs/selection.md); dhkd.data.selection builds them.

    synthetic: a seeded fraction of train/good is held out (not trained on); validation = those
    images plus a defective twin of each with synthetic anomalies of exact masks; the real test
    set is read once, at the end. test_fold: a seeded per-defect-type stratified half of the test
    set validates, the other half is reported. test: the paper protocol, selected and reported
    on the whole test set (optimistic).
    """

    protocol: SelectionProtocol = "synthetic"
    val_fraction: float = Field(
        0.2, gt=0, lt=1, description="synthetic: share of train/good held out; test_fold: of test"
    )
    seed: int = Field(0, ge=0, description="seed of the split and of the synthetic defects")


class TrainConfig(Section):
    """The shared sections; a method's config subclasses it and adds its own sections."""

    method: str = Field("dhkd", description="registered method name (dhkd.methods.registry)")
    seed: int = Field(0, ge=0)
    data: DataConfig = DataConfig()
    backbone: BackboneConfig = BackboneConfig()
    score: ScoreConfig = ScoreConfig()
    optim: OptimConfig = OptimConfig()
    threshold: ThresholdConfig = ThresholdConfig()
    selection: SelectionConfig = SelectionConfig()

    def to_flat_dict(self) -> dict[str, Any]:
        """Dotted keys -> values, e.g. {"optim.lr": 0.001}; for tracking params."""
        return flatten(self.model_dump(mode="json"))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out
