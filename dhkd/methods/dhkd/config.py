"""Config sections of method dhkd (README.md in this folder): teacher, noise, student, loss."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from dhkd.sections import Section, TrainConfig


class TeacherConfig(Section):
    depth: int = Field(8, ge=1, le=32, description="AllInOneBlock couplings per level (K)")
    clamp: float = Field(2.0, gt=0, le=10)
    hidden_ratio: float = Field(1.0, gt=0, le=8, description="subnet width / feature channels")
    pos_enc: bool = Field(False, description="condition couplings on a positional encoding")
    pos_enc_dim: int = Field(16, ge=2, le=128)
    epochs: int = Field(10, ge=0, le=1000)
    lr: float = Field(2e-4, gt=0)
    untrained: bool = Field(
        False,
        description="ablation: no trained teacher (the flow keeps its random initialisation and "
        "the teacher stage is skipped, so the student regresses randomly transformed features)",
    )

    @model_validator(mode="after")
    def _trained_or_named_ablation(self) -> TeacherConfig:
        if self.epochs == 0 and not self.untrained:
            raise ValueError(
                "teacher.epochs=0 leaves the flow teacher untrained, which turns DHKD into "
                "regression of randomly transformed features; set teacher.epochs >= 1, or set "
                "teacher.untrained=true to run that on purpose as the 'no trained teacher' ablation"
            )
        return self


class NoiseConfig(Section):
    sigma: float = Field(0.2, ge=0, le=2, description="std of feature noise (unit-RMS features)")
    mask: Literal["full", "patches"] = "full"
    mode: Literal["add", "replace"] = Field(
        "add", description="add: f + m * eps; replace: masked features become eps (inpainting)"
    )
    patch_size: float = Field(0.125, gt=0, le=1, description="patch side, fraction of the map")
    patch_count: int = Field(4, ge=1, le=64)
    placement: Literal["inside", "uniform"] = Field(
        "inside",
        description="inside: patches lie within the map (edge cells are erased less often); "
        "uniform: patches may hang over the edge, every cell erased equally often",
    )
    prob: float = Field(1.0, ge=0, le=1, description="probability a sample is noised")


class StudentConfig(Section):
    kind: Literal["cnn", "flow"] = Field("cnn", description="flow = heterogeneity ablation")
    variant: Literal["none", "spatial", "frequency", "dual"] = "dual"
    blocks: int = Field(2, ge=0, le=16, description="dual-domain blocks per level")
    freq_branch: Literal["conv1x1", "global_filter"] = "conv1x1"
    hidden_ratio: float = Field(1.0, gt=0, le=8)
    flow_depth: int = Field(8, ge=1, le=32, description="depth when kind = flow")


class LossConfig(Section):
    kd: Literal["mse", "cosine"] = Field(
        "mse", description="distillation distance; the anomaly map scores with the same one"
    )
    affinity_weight: float = Field(0.1, ge=0, le=100, description="lambda for the affinity loss")
    affinity_form: Literal["cosine", "dot"] = "cosine"
    affinity_pool: int = Field(
        32, ge=2, le=64, description="maps larger than this side are pooled to it (the design's 32)"
    )


class DHKDConfig(TrainConfig):
    """A DHKD run: the shared sections plus teacher, noise, student and loss."""

    method: Literal["dhkd"] = "dhkd"
    teacher: TeacherConfig = TeacherConfig()
    noise: NoiseConfig = NoiseConfig()
    student: StudentConfig = StudentConfig()
    loss: LossConfig = LossConfig()
