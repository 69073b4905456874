"""The original framework's `PrecisionMode` and `OptimizationStrategy` names and what each
strategy switches on.

A strategy in `training.enabled_strategies` is shorthand: it turns its feature on with a
sensible setting when the feature's own key is still at its off value. The keys stay the
source of truth (`gradient_checkpointing: save_dots` needs no strategy listed).
"""

from __future__ import annotations

import enum
from typing import Any

from hamnet_jax.errors import InputError
from hamnet_jax.models.config import ATTENTION_IMPLEMENTATIONS, REMAT_POLICIES


class PrecisionMode(enum.StrEnum):
    """The original framework's precision names."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    MIXED = "mixed"  # automatic mixed precision: the best half type the backend runs fast
    AUTOMATIC_MIXED = "mixed"  # the original framework's name (an alias of MIXED)

    @classmethod
    def parse(cls, value: str | PrecisionMode) -> PrecisionMode:
        aliases = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "amp": "mixed",
                   "automatic_mixed": "mixed", "auto": "mixed"}
        raw = value.value if isinstance(value, PrecisionMode) else str(value).lower()
        try:
            return cls(aliases.get(raw, raw))
        except ValueError:
            raise InputError(f"training.precision_mode: unknown mode {value!r}; expected one of "
                             f"{[m.value for m in cls]}") from None


class OptimizationStrategy(enum.StrEnum):
    MIXED_PRECISION = "mixed_precision"
    GRADIENT_ACCUMULATION = "gradient_accumulation"
    GRADIENT_CHECKPOINTING = "gradient_checkpointing"
    MEMORY_EFFICIENT_ATTENTION = "memory_efficient_attention"
    DATA_PARALLEL = "data_parallel"
    FSDP = "fsdp"
    TENSOR_PARALLEL = "tensor_parallel"
    DYNAMIC_BATCHING = "dynamic_batching"

    @classmethod
    def parse(cls, value: Any) -> OptimizationStrategy:
        raw = value.value if isinstance(value, OptimizationStrategy) else str(value).lower()
        try:
            return cls(raw)
        except ValueError:
            raise InputError(f"training.enabled_strategies: unknown strategy {value!r}; expected some of "
                             f"{[s.value for s in cls]}") from None


def _switch(field: str, value: Any, on: str, allowed: tuple[str, ...]) -> str:
    """A bool or a name for a switchable feature: True -> `on`, False -> allowed[0]."""
    if isinstance(value, bool) or str(value).lower() in ("true", "false"):
        return on if str(value).lower() == "true" else allowed[0]
    if value not in allowed:
        raise InputError(f"training.{field}: expected true/false or one of {list(allowed)}, got {value!r}")
    return str(value)


def resolve_training_options(values: dict[str, Any]) -> dict[str, Any]:
    """Normalize the training-optimization keys of a TrainingConfig and apply the strategies."""
    out = dict(values)
    out["gradient_checkpointing"] = _switch("gradient_checkpointing", out["gradient_checkpointing"], "full",
                                            REMAT_POLICIES)
    out["memory_efficient_attention"] = _switch("memory_efficient_attention", out["memory_efficient_attention"],
                                                "dot_product", ATTENTION_IMPLEMENTATIONS)
    strategies = tuple(OptimizationStrategy.parse(s) for s in out["enabled_strategies"])
    out["enabled_strategies"] = tuple(s.value for s in strategies)
    mesh = dict(out["mesh"])
    for s in strategies:
        if s is OptimizationStrategy.MIXED_PRECISION and out["precision_mode"] == "fp32":
            out["precision_mode"] = "mixed"
        elif s is OptimizationStrategy.GRADIENT_CHECKPOINTING and out["gradient_checkpointing"] == "none":
            out["gradient_checkpointing"] = "full"
        elif s is OptimizationStrategy.MEMORY_EFFICIENT_ATTENTION and out["memory_efficient_attention"] == "naive":
            out["memory_efficient_attention"] = "dot_product"
        elif s is OptimizationStrategy.DYNAMIC_BATCHING:
            out["bucket_by_visits"] = True
        elif s is OptimizationStrategy.GRADIENT_ACCUMULATION and out["gradient_accumulation_steps"] < 2:
            raise InputError("training.enabled_strategies lists gradient_accumulation but "
                             "training.gradient_accumulation_steps is 1; set it to the number of micro-batches")
        elif s is OptimizationStrategy.FSDP and mesh == {"data": -1}:
            mesh = {"fsdp": -1}
        elif s is OptimizationStrategy.TENSOR_PARALLEL and int(mesh.get("tensor", 1)) < 2:
            raise InputError("training.enabled_strategies lists tensor_parallel but training.mesh has no "
                             "'tensor' axis larger than 1 (e.g. mesh: {data: -1, tensor: 2})")
    out["mesh"] = mesh
    return out
