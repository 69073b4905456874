"""Schemas of the `pruning:`, `quantization:` and `distillation:` sections, which are also the
library's configs (`PruningConfig`, `QuantizationConfig`, `DistillationConfig`) with the
original framework's names (`PruningMethod`, `QuantizationMode`, `DistillationMethod`)."""

from __future__ import annotations

import enum
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from hamnet_jax.config.schema import Bool, NonNegativeInt, PositiveInt, section, set_field

STRUCTURE_KINDS = ("neurons", "heads", "channels")  # what structured pruning removes (transforms.structured)


class PruningMethod(StrEnum):
    MAGNITUDE = "magnitude"  # |w|, per layer
    GLOBAL_MAGNITUDE = "global_magnitude"  # |w|, ranked over all prunable weights
    GRADIENT = "gradient"  # |w * g| accumulated over fine-tuning steps
    SNIP = "snip"  # |w * g| of calibration batches, global, one shot (Lee et al. 2019)
    TAYLOR = "taylor"  # sum (w * g)^2 (Molchanov et al. 2019)
    MOVEMENT = "movement"  # sum -w * g (Sanh et al. 2020)
    STRUCTURED = "structured"  # whole neurons / heads / input channels, then compaction


class QuantizationMode(StrEnum):
    DYNAMIC = "dynamic"  # int8 weights, activations quantized at run time
    STATIC = "static"  # int8 weights, activation ranges calibrated beforehand
    QAT = "qat"  # fake-quant fine-tuning, then the dynamic int8 path
    WEIGHT_ONLY = "weight_only"  # int8 weights, float compute
    MIXED = "mixed"  # per-layer widths by measured sensitivity
    FP16 = "fp16"
    BF16 = "bf16"


class DistillationMethod(enum.StrEnum):
    SOFT_TARGET = "soft_target"  # Gaussian KL on the regression head (+ T^2 KL on a class head)
    FEATURE_MATCHING = "feature_matching"  # FitNets, plus soft targets
    ATTENTION_TRANSFER = "attention_transfer"  # attention maps, plus soft targets
    RELATIONAL = "relational"  # Park et al. 2019 distance + angle, plus soft targets
    SELF_DISTILLATION = "self_distillation"  # EMA teacher of the student itself
    BORN_AGAIN = "born_again"  # generations of same-size students (Furlanello et al. 2018)


@section("pruning")
class PruningConfig:
    """What to prune and how to fine-tune. Epochs count fine-tuning epochs; the schedule
    runs from `start_epoch` to `end_epoch` (default: the middle of fine-tuning). A gradual
    schedule applies to the magnitude / gradient / Taylor / movement criteria in a single
    cycle; structured, SNIP and multi-cycle pruning cut one-shot per cycle."""

    method: PruningMethod = PruningMethod.MAGNITUDE
    target_sparsity: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5
    pruning_schedule: Literal["one_shot", "linear", "polynomial"] = "polynomial"
    pruning_frequency: PositiveInt = 10  # optimizer steps between mask updates
    start_epoch: NonNegativeInt = 0
    end_epoch: Annotated[int, Field(strict=True, ge=-1)] = -1  # -1: half of finetune_epochs
    finetune_epochs: PositiveInt = 6
    cycles: PositiveInt = 1  # iterative prune -> fine-tune cycles (one-shot each, sparsity rising)
    structures: tuple[Literal["neurons", "heads", "channels"], ...] = STRUCTURE_KINDS
    compact: Bool = True
    learning_rate: Annotated[float, Field(gt=0)] = 3e-4
    batch_size: PositiveInt = 64
    seed: NonNegativeInt = 0

    @model_validator(mode="after")
    def _epochs(self) -> PruningConfig:
        if 0 <= self.end_epoch < self.start_epoch:
            raise ValueError(f"pruning.end_epoch {self.end_epoch} is before pruning.start_epoch {self.start_epoch}")
        return self

    @property
    def gradual(self) -> bool:
        """Whether `pruning_schedule` / `start_epoch` / `end_epoch` / `pruning_frequency` apply."""
        return self.method not in (PruningMethod.STRUCTURED, PruningMethod.SNIP) and self.cycles == 1

    @property
    def schedule_end_epoch(self) -> int:
        return self.end_epoch if self.end_epoch >= 0 else max(self.finetune_epochs // 2, self.start_epoch)

    @classmethod
    def from_section(cls, raw: dict[str, Any]) -> PruningConfig:
        return cls(**raw)


@section("quantization")
class QuantizationConfig:
    """How to quantize. `precision` is the original key (int8 / fp16 / bf16); `mode`
    picks the int8 method."""

    mode: QuantizationMode = QuantizationMode.DYNAMIC
    precision: Literal["int8", "fp16", "bf16"] = "int8"
    calibration_method: Literal["minmax", "percentile"] = "minmax"  # static mode
    percentile: Annotated[float, Field(gt=50.0, le=100.0)] = 99.99
    calibration_batches: PositiveInt = 8
    calibration_batch_size: PositiveInt = 128
    qat_epochs: PositiveInt = 3
    learning_rate: Annotated[float, Field(gt=0)] = 1e-4
    batch_size: PositiveInt = 64
    candidate_bits: tuple[Annotated[int, Field(strict=True, ge=2, le=8)], ...] = (4, 8)
    sensitivity_tolerance: Annotated[float, Field(ge=0)] = 0.01  # mixed: allowed validation-loss increase
    seed: NonNegativeInt = 0

    @field_validator("candidate_bits")
    @classmethod
    def _bits(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("quantization.candidate_bits: give at least one width in 2..8")
        return value

    @model_validator(mode="after")
    def _precision(self) -> QuantizationConfig:
        if self.precision in ("fp16", "bf16"):
            if self.mode not in (QuantizationMode.DYNAMIC, QuantizationMode(self.precision)):
                raise ValueError(f"quantization.precision {self.precision} casts the weights; it cannot be combined "
                                 f"with quantization.mode {self.mode.value} (an int8 method)")
            set_field(self, "mode", QuantizationMode(self.precision))
        elif self.mode in (QuantizationMode.FP16, QuantizationMode.BF16):
            set_field(self, "precision", self.mode.value)
        return self

    @classmethod
    def from_section(cls, raw: dict[str, Any]) -> QuantizationConfig:
        return cls(**raw)


@section("distillation")
class DistillationConfig:
    """Objective and budget. `alpha` weighs distillation against the task loss;
    `intermediate_features` / `attention_maps` / `relational` add FitNets, attention transfer
    and RKD terms to whatever the method is."""

    method: DistillationMethod = DistillationMethod.SOFT_TARGET
    temperature: Annotated[float, Field(gt=0)] = 4.0
    alpha: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    intermediate_features: Bool = False
    attention_maps: Bool = False
    relational: Bool = False
    feature_weight: Annotated[float, Field(ge=0)] = 1.0
    attention_weight: Annotated[float, Field(ge=0)] = 1.0
    relational_weight: Annotated[float, Field(ge=0)] = 1.0
    teacher_weights: tuple[Annotated[float, Field(ge=0)], ...] | None = None
    teacher_mode: Literal["weighted", "uncertainty"] = "weighted"
    ema_decay: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.99
    generations: PositiveInt = 2
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 128
    learning_rate: Annotated[float, Field(gt=0)] = 2e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    seed: NonNegativeInt = 0
    compression_ratio: Annotated[float, Field(gt=0.0, le=1.0)] = 0.25  # student / teacher parameters

    @property
    def keeps_architecture(self) -> bool:
        """Self-distillation and born-again students have the teacher's architecture."""
        return self.method in (DistillationMethod.SELF_DISTILLATION, DistillationMethod.BORN_AGAIN)
