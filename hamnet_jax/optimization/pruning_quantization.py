"""`HAMNetOptimizer`: the original framework's pruning + quantization facade.

    from hamnet_jax.optimization.pruning_quantization import (
        HAMNetOptimizer, PruningConfig, PruningMethod, QuantizationConfig, QuantizationMode)

    opt = HAMNetOptimizer(PruningConfig(method=PruningMethod.STRUCTURED, target_sparsity=0.5),
                          QuantizationConfig(mode=QuantizationMode.DYNAMIC))
    optimized_model, result = opt.optimize_model(model_config, params, train, val, test)
    outputs, aux = optimized_model.apply(test)       # runs the pruned / int8 model itself
    result.compression_ratio, result.speedup_factor, result.accuracy_drop

`optimized_model` is a `CompressedModel`: its `apply(batch)` runs the compressed execution
path (int8 codes with their scales), `float_params()` gives float weights for a plain
`HAMNet(optimized_model.config).apply`. Thin: the work is in `hamnet_jax.compression`.
"""

from __future__ import annotations

from typing import Any

from hamnet_jax.compression.optimize import OptimizationResult, compress_model, measure_compression
from hamnet_jax.config import PruningConfig, PruningMethod, QuantizationConfig, QuantizationMode
from hamnet_jax.data.batch import Batch
from hamnet_jax.inference.compressed import CompressedModel
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.models.hamnet import HAMNet
from hamnet_jax.training.fit_options import FitOptions

__all__ = ["CompressedModel", "HAMNetOptimizer", "OptimizationResult", "PruningConfig", "PruningMethod",
           "QuantizationConfig", "QuantizationMode"]


class HAMNetOptimizer:
    """Prune (optional), then quantize (optional), then measure against the input model."""

    def __init__(self, pruning_config: PruningConfig | None = None,
                 quantization_config: QuantizationConfig | None = None, target_std: float = 1.0,
                 latency_batch_size: int = 256, latency_reps: int = 20, options: FitOptions | None = None) -> None:
        if pruning_config is None and quantization_config is None:
            raise ValueError("HAMNetOptimizer needs a PruningConfig, a QuantizationConfig or both")
        self.pruning_config = pruning_config
        self.quantization_config = quantization_config
        self.target_std = target_std
        self.latency_batch_size = latency_batch_size
        self.latency_reps = latency_reps
        self.options = options or FitOptions()

    def optimize_model(self, model: HAMNetConfig | HAMNet, params: Any, train_data: Batch, val_data: Batch,
                       test_data: Batch) -> tuple[CompressedModel, OptimizationResult]:
        """(the optimized model, result). `model` is a `HAMNetConfig` or a `HAMNet` module."""
        config = model.config if isinstance(model, HAMNet) else model
        optimized, pruning, quantization = compress_model(config, params, train_data, val_data, self.pruning_config,
                                                          self.quantization_config, self.options)
        result = measure_compression(CompressedModel(config, params), optimized, test_data, self.target_std,
                                     self.latency_batch_size, self.latency_reps, pruning, quantization)
        return optimized, result
