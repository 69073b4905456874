"""`HAMNetOptimizer`: the original framework's pruning + quantization facade.

    from hamnet_jax.optimization.pruning_quantization import (
        HAMNetOptimizer, PruningConfig, PruningMethod, QuantizationConfig, QuantizationMode)

    opt = HAMNetOptimizer(PruningConfig(method=PruningMethod.STRUCTURED, target_sparsity=0.5),
                          QuantizationConfig(mode=QuantizationMode.DYNAMIC))
    params, result = opt.optimize_model(model_config, params, train, val, test)
    result.compression_ratio, result.speedup_factor, result.accuracy_drop

Thin: `compression.prune` and `compression.quantize` do the work; this class measures the
baseline and the result side by side (test metrics, checkpoint bytes on disk, latency at
one batch size, interleaved) so every figure in `OptimizationResult` is measured.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from hamnet_jax.compression.configs import PruningConfig, PruningMethod, QuantizationConfig, QuantizationMode
from hamnet_jax.compression.prune import prune_and_finetune
from hamnet_jax.compression.quantize import quantize_model
from hamnet_jax.data.batch import Batch
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet
from hamnet_jax.training.state import count_params
from hamnet_jax.transforms.compressed_model import CompressedModel, float_bytes, latency_ms, test_metrics

__all__ = ["HAMNetOptimizer", "OptimizationResult", "PruningConfig", "PruningMethod", "QuantizationConfig",
           "QuantizationMode"]


@dataclasses.dataclass
class OptimizationResult:
    """Measured outcome. `compression_ratio` = dense fp32 checkpoint bytes / compressed
    checkpoint bytes; `speedup_factor` = baseline / optimized median latency at
    `latency_batch_size`; `accuracy_drop` = relative test-MAE increase."""

    model: CompressedModel
    compression_ratio: float
    speedup_factor: float
    accuracy_drop: float
    baseline_metrics: dict[str, float]
    optimized_metrics: dict[str, float]
    baseline_bytes: int
    optimized_bytes: int
    baseline_latency_ms: float
    optimized_latency_ms: float
    latency_batch_size: int
    baseline_params: int
    optimized_params: int
    pruning: dict[str, Any] = dataclasses.field(default_factory=dict)
    quantization: dict[str, Any] = dataclasses.field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures (no arrays)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("model", "pruning", "quantization")}
        out["config"] = self.model.config.to_dict()
        out["execution"] = self.model.mode or "float"
        out["pruning"] = {k: v for k, v in self.pruning.items() if k != "layers"}
        out["quantization"] = self.quantization
        return out


class HAMNetOptimizer:
    """Prune (optional), then quantize (optional), then measure against the input model."""

    def __init__(self, pruning_config: PruningConfig | None = None,
                 quantization_config: QuantizationConfig | None = None, target_std: float = 1.0,
                 latency_batch_size: int = 256, latency_reps: int = 20) -> None:
        if pruning_config is None and quantization_config is None:
            raise ValueError("HAMNetOptimizer needs a PruningConfig, a QuantizationConfig or both")
        self.pruning_config = pruning_config
        self.quantization_config = quantization_config
        self.target_std = target_std
        self.latency_batch_size = latency_batch_size
        self.latency_reps = latency_reps

    def optimize_model(self, model: HAMNetConfig | HAMNet, params: Any, train_data: Batch, val_data: Batch,
                       test_data: Batch) -> tuple[Any, OptimizationResult]:
        """(new params, result). `model` is a `HAMNetConfig` or a `HAMNet` module."""
        config = model.config if isinstance(model, HAMNet) else model
        pruning: dict[str, Any] = {}
        quantization: dict[str, Any] = {}
        new_config, new_params = config, params
        if self.pruning_config is not None:
            outcome = prune_and_finetune(config, params, train_data, val_data, self.pruning_config)
            new_config, new_params = outcome.config, outcome.params
            pruning = {"method": str(self.pruning_config.method), **outcome.report, "history": outcome.history}
        compressed = CompressedModel(new_config, new_params)
        if self.quantization_config is not None:
            compressed, quantization = quantize_model(new_config, new_params, train_data, val_data,
                                                      self.quantization_config)
        return compressed.params, self.measure(CompressedModel(config, params), compressed, test_data,
                                               pruning, quantization)

    def measure(self, baseline: CompressedModel, optimized: CompressedModel, test_data: Batch,
                pruning: dict[str, Any] | None = None,
                quantization: dict[str, Any] | None = None) -> OptimizationResult:
        predicts = {"baseline": baseline.predict_fn(), "optimized": optimized.predict_fn()}
        base_metrics = test_metrics(predicts["baseline"], test_data, self.target_std)
        new_metrics = test_metrics(predicts["optimized"], test_data, self.target_std)
        bs = min(self.latency_batch_size, test_data.size)
        latency = latency_ms(predicts, test_data.take(np.arange(bs)), self.latency_reps)
        base_bytes, new_bytes = float_bytes(baseline.params), optimized.checkpoint_bytes()
        return OptimizationResult(
            model=optimized, compression_ratio=base_bytes / new_bytes,
            speedup_factor=latency["baseline"] / latency["optimized"],
            accuracy_drop=(new_metrics["mae"] - base_metrics["mae"]) / base_metrics["mae"],
            baseline_metrics=base_metrics, optimized_metrics=new_metrics, baseline_bytes=base_bytes,
            optimized_bytes=new_bytes, baseline_latency_ms=latency["baseline"],
            optimized_latency_ms=latency["optimized"], latency_batch_size=bs,
            baseline_params=count_params(baseline.params), optimized_params=count_params(optimized.params),
            pruning=pruning or {}, quantization=quantization or {})
