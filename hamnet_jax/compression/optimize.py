"""Prune (optional), then quantize (optional), then measure against the input model.

`compress_model` does the work (`compression.prune`, `compression.quantize`);
`measure_compression` puts the baseline and the result side by side (test metrics,
checkpoint bytes on disk, latency at one batch size, interleaved) so every figure in
`OptimizationResult` is measured. The original `HAMNetOptimizer` facade calls both.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from hamnet_jax.compression.prune import prune_and_finetune
from hamnet_jax.compression.quantize import quantize_model
from hamnet_jax.config import PruningConfig, QuantizationConfig
from hamnet_jax.data.batch import Batch
from hamnet_jax.evaluation.metrics import point_metrics
from hamnet_jax.evaluation.timing import latency_ms
from hamnet_jax.export.compressed_checkpoint import compressed_bytes, float_bytes
from hamnet_jax.inference.compressed import CompressedModel
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.training.fit_options import FitOptions
from hamnet_jax.training.state import count_params


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


def compress_model(config: HAMNetConfig, params: Any, train: Batch, val: Batch,
                   pruning: PruningConfig | None, quantization: QuantizationConfig | None,
                   options: FitOptions | None = None) -> tuple[CompressedModel, dict, dict]:
    """(the compressed model, pruning report, quantization report). `options` carries the
    fine-tuning loop's precision, mesh, accumulation and checkpoint/resume settings."""
    if pruning is None and quantization is None:
        raise ValueError("compression needs a PruningConfig, a QuantizationConfig or both")
    options = options or FitOptions()
    pruning_report: dict[str, Any] = {}
    quantization_report: dict[str, Any] = {}
    model = CompressedModel(config, params)
    if pruning is not None:
        outcome = prune_and_finetune(config, params, train, val, pruning, options.stage("prune"))
        model = CompressedModel(outcome.config, outcome.params)
        pruning_report = {"method": str(pruning.method), **outcome.report, "history": outcome.history}
    if quantization is not None:
        model, quantization_report = quantize_model(model.config, model.params, train, val, quantization,
                                                    options.stage("quantize"))
    return model, pruning_report, quantization_report


def measure_compression(baseline: CompressedModel, optimized: CompressedModel, test_data: Batch,
                        target_std: float = 1.0, latency_batch_size: int = 256, latency_reps: int = 20,
                        pruning: dict[str, Any] | None = None,
                        quantization: dict[str, Any] | None = None) -> OptimizationResult:
    predicts = {"baseline": baseline.predict_fn(), "optimized": optimized.predict_fn()}
    base_metrics = point_metrics(predicts["baseline"], test_data, target_std)
    new_metrics = point_metrics(predicts["optimized"], test_data, target_std)
    bs = min(latency_batch_size, test_data.size)
    latency = latency_ms(predicts, test_data.take(np.arange(bs)), latency_reps)
    base_bytes = float_bytes(baseline.params)
    new_bytes = compressed_bytes(optimized.params, optimized.quant, optimized.bits)
    return OptimizationResult(
        model=optimized, compression_ratio=base_bytes / new_bytes,
        speedup_factor=latency["baseline"] / latency["optimized"],
        accuracy_drop=(new_metrics["mae"] - base_metrics["mae"]) / base_metrics["mae"],
        baseline_metrics=base_metrics, optimized_metrics=new_metrics, baseline_bytes=base_bytes,
        optimized_bytes=new_bytes, baseline_latency_ms=latency["baseline"],
        optimized_latency_ms=latency["optimized"], latency_batch_size=bs,
        baseline_params=count_params(baseline.params), optimized_params=count_params(optimized.params),
        pruning=pruning or {}, quantization=quantization or {})
