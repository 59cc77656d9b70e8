"""The config section of method bikd: `bikd.*` (README.md in this folder)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from dhkd.sections import Section, TrainConfig


class BikdConfig(Section):
    """Bidirectional KD (methods/bikd/model.py); each field is our reading of the abstract."""

    direction: Literal["both", "forward", "backward"] = Field(
        "both", description="distillation paths in use (the weights set their strength)"
    )
    forward_weight: float = Field(1.0, ge=0, le=100, description="teacher -> student distillation")
    backward_weight: float = Field(1.0, ge=0, le=100, description="student -> teacher side")
    forward_width: int = Field(32, ge=4, le=512, description="base width of the forward student")
    forward_mse_weight: float = Field(0.0, ge=0, le=100, description="MSE added to 1 - cosine")
    bottleneck_ratio: float = Field(0.5, gt=0, le=4, description="embedding width / sum(C_l)")
    bottleneck_stride: Literal[1, 2] = Field(2, description="embedding at coarsest level / this")
    coupling_weight: float = Field(
        0.0,
        ge=0,
        le=100,
        description="reciprocal exchange: each path also distils from the other's output "
        "(detached), 1 - cosine; 0 = the two paths are trained independently",
    )
    augment: bool = Field(True, description="anomaly-simulating augmentation at image level")
    augment_prob: float = Field(0.25, ge=0, le=1, description="probability a sample is augmented")
    augment_kind: Literal["noise", "texture", "both"] = "both"
    augment_max_patches: int = Field(2, ge=1, le=16, description="patches per augmented image")
    augment_min_size: float = Field(0.05, gt=0, le=1, description="patch side / image side")
    augment_max_size: float = Field(0.25, gt=0, le=1, description="patch side / image side")
    augment_min_opacity: float = Field(0.5, gt=0, le=1, description="blend of pasted patches")
    erase_prob: float = Field(
        0.0,
        ge=0,
        le=1,
        description="probability that the reverse distiller sees a sample's teacher features "
        "with random patches erased (replaced by noise of their RMS) and must reconstruct the "
        "clean ones there from the context; 0 = off",
    )
    erase_size: float = Field(0.25, gt=0, le=1, description="erased patch side / map side")
    erase_count: int = Field(4, ge=1, le=64, description="erased patches per sample")

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
        if self.coupling_weight > 0 and 0 in (
            self.active_forward_weight,
            self.active_backward_weight,
        ):
            raise ValueError(
                f"bikd.coupling_weight {self.coupling_weight} couples the forward and backward "
                f"paths, but direction {self.direction!r} with forward_weight "
                f"{self.forward_weight} and backward_weight {self.backward_weight} leaves only "
                "one: set bikd.coupling_weight to 0 or use both paths"
            )
        if self.augment_min_size > self.augment_max_size:
            raise ValueError(
                f"bikd.augment_min_size ({self.augment_min_size}) must not exceed "
                f"bikd.augment_max_size ({self.augment_max_size})"
            )
        return self


class BiKDConfig(TrainConfig):
    """A BiKD run: the shared sections plus bikd."""

    method: Literal["bikd"] = "bikd"
    bikd: BikdConfig = BikdConfig()
