"""Pruning and quantization pipelines over a trained model: prune -> fine-tune -> compact,
quantize (PTQ / QAT / mixed), with every saving measured."""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "DistillationResult": "distillation",
    "distill_model": "distillation",
    "OptimizationResult": "optimize",
    "compress_model": "optimize",
    "prune_and_finetune": "prune",
    "quantize_model": "quantize",
    "student_config": "student",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
