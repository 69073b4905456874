"""Typed configuration: one schema per `hamnet_config.yaml` section, `HAMNET_*` overrides,
and the original framework's option names."""

from hamnet_jax.config.compression import (
    STRUCTURE_KINDS, DistillationConfig, DistillationMethod, PruningConfig, PruningMethod, QuantizationConfig,
    QuantizationMode,
)
from hamnet_jax.config.run_config import (
    ENV_VARS, MODEL_KEYS, ORIGINAL, TYPED, Config, config_from_dict, env_overrides, load_config,
    section_from_keywords,
)
from hamnet_jax.config.sections import (
    REGRESSION_LOSSES, REGULARIZATION_TECHNIQUES, DataConfig, GeneralConfig, RegularizationSection, TrainingConfig,
)
from hamnet_jax.config.strategies import OptimizationStrategy, PrecisionMode, resolve_training_options

__all__ = [
    "ENV_VARS", "MODEL_KEYS", "ORIGINAL", "REGRESSION_LOSSES", "REGULARIZATION_TECHNIQUES",
    "STRUCTURE_KINDS", "TYPED", "Config", "DataConfig", "DistillationConfig", "DistillationMethod", "GeneralConfig",
    "OptimizationStrategy", "PrecisionMode", "PruningConfig", "PruningMethod", "QuantizationConfig",
    "QuantizationMode", "RegularizationSection", "TrainingConfig", "config_from_dict", "env_overrides",
    "load_config", "resolve_training_options", "section_from_keywords",
]
