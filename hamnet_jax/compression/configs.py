"""`PruningConfig`, `QuantizationConfig` and the original framework's names
(`PruningMethod`, `QuantizationMode`); both build from the YAML `pruning:` and
`quantization:` sections (original keys, plus this version's extra keys)."""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import Any

from hamnet_jax.errors import InputError
from hamnet_jax.transforms.structured import STRUCTURE_KINDS


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


def _check(cls: type, section: str, raw: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for key, value in raw.items():
        name = aliases.get(key, key)
        if name not in known:
            raise InputError(f"config section {section!r}: unknown key {key!r}; known keys: "
                             f"{sorted(known | set(aliases))}")
        out[name] = tuple(value) if isinstance(value, list) else value
    return out


@dataclasses.dataclass(frozen=True)
class PruningConfig:
    """What to prune and how to fine-tune. Epochs count fine-tuning epochs; the schedule
    runs from `start_epoch` to `end_epoch` (default: the middle of fine-tuning)."""

    method: PruningMethod | str = PruningMethod.MAGNITUDE
    target_sparsity: float = 0.5
    pruning_schedule: str = "polynomial"  # one_shot | linear | polynomial
    pruning_frequency: int = 10  # optimizer steps between mask updates
    start_epoch: int = 0
    end_epoch: int = -1  # -1: half of finetune_epochs
    finetune_epochs: int = 6
    cycles: int = 1  # iterative prune -> fine-tune cycles (one-shot each, sparsity rising)
    structures: tuple[str, ...] = STRUCTURE_KINDS
    compact: bool = True
    learning_rate: float = 3e-4
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "structures", tuple(self.structures))
        try:
            object.__setattr__(self, "method", PruningMethod(self.method))
        except ValueError:
            raise InputError(f"pruning.method: unknown method {self.method!r}; expected one of "
                             f"{[m.value for m in PruningMethod]}") from None
        if not 0.0 <= float(self.target_sparsity) < 1.0:
            raise InputError(f"pruning.target_sparsity must be in [0, 1), got {self.target_sparsity!r}")
        if self.pruning_schedule not in ("one_shot", "linear", "polynomial"):
            raise InputError(f"pruning.pruning_schedule: {self.pruning_schedule!r}; expected one_shot, linear "
                             "or polynomial")
        for name in ("pruning_frequency", "finetune_epochs", "cycles", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"pruning.{name} must be >= 1, got {getattr(self, name)!r}")
        unknown = sorted(set(self.structures) - set(STRUCTURE_KINDS))
        if unknown:
            raise InputError(f"pruning.structures: unknown {unknown}; expected a subset of {list(STRUCTURE_KINDS)}")
        if self.end_epoch >= 0 and self.end_epoch < self.start_epoch:
            raise InputError(f"pruning.end_epoch {self.end_epoch} is before start_epoch {self.start_epoch}")

    @property
    def schedule_end_epoch(self) -> int:
        return self.end_epoch if self.end_epoch >= 0 else max(self.finetune_epochs // 2, self.start_epoch)

    @classmethod
    def from_section(cls, raw: dict[str, Any]) -> PruningConfig:
        return cls(**_check(cls, "pruning", raw, {}))


@dataclasses.dataclass(frozen=True)
class QuantizationConfig:
    """How to quantize. `precision` is the original key (int8 / fp16 / bf16); `mode`
    picks the int8 method."""

    mode: QuantizationMode | str = QuantizationMode.DYNAMIC
    precision: str = "int8"
    calibration_method: str = "minmax"  # minmax | percentile (static mode)
    percentile: float = 99.99
    calibration_batches: int = 8
    calibration_batch_size: int = 128
    qat_epochs: int = 3
    learning_rate: float = 1e-4
    batch_size: int = 64
    candidate_bits: tuple[int, ...] = (4, 8)
    sensitivity_tolerance: float = 0.01  # mixed: allowed validation-loss increase per layer
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "candidate_bits", tuple(int(b) for b in self.candidate_bits))
        try:
            mode = QuantizationMode(self.mode)
        except ValueError:
            raise InputError(f"quantization.mode: unknown mode {self.mode!r}; expected one of "
                             f"{[m.value for m in QuantizationMode]}") from None
        if self.precision not in ("int8", "fp16", "bf16"):
            raise InputError(f"quantization.precision: {self.precision!r}; expected int8, fp16 or bf16")
        if self.precision in ("fp16", "bf16"):
            mode = QuantizationMode(self.precision)
        object.__setattr__(self, "mode", mode)
        if self.calibration_method not in ("minmax", "percentile"):
            raise InputError(f"quantization.calibration_method: {self.calibration_method!r}; expected minmax "
                             "or percentile")
        if not 50.0 < self.percentile <= 100.0:
            raise InputError(f"quantization.percentile must be in (50, 100], got {self.percentile!r}")
        for name in ("calibration_batches", "calibration_batch_size", "qat_epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"quantization.{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.candidate_bits or any(not 2 <= b <= 8 for b in self.candidate_bits):
            raise InputError(f"quantization.candidate_bits must be widths in 2..8, got {self.candidate_bits}")

    @classmethod
    def from_section(cls, raw: dict[str, Any]) -> QuantizationConfig:
        return cls(**_check(cls, "quantization", raw, {}))
