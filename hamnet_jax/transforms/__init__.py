"""Pure functions over pytrees: pruning masks and criteria, quantizers, distillation and task
losses, regularizers, augmentations."""

from hamnet_jax.lazy_exports import lazy_exports

_EXPORTS = {
    "fgsm": "adversarial",
    "drop_modalities": "augment",
    "combine_teachers": "distillation",
    "distill_loss": "distillation",
    "ema_update": "distillation",
    "drop_connect": "dropout_variants",
    "beta_nll": "losses",
    "classification_loss": "losses",
    "gaussian_nll": "losses",
    "regression_loss": "losses",
    "task_loss": "losses",
    "apply_masks": "masks",
    "sparsity_report": "masks",
    "PruningSchedule": "pruning",
    "masks_from_scores": "pruning",
    "prune_optax": "pruning",
    "pruning_masks": "pruning",
    "dequantize": "quantization",
    "dequantize_params": "quantization",
    "fake_quant_params": "quantization",
    "quantize": "quantization",
    "quantize_params": "quantization",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
