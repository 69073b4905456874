"""The run configs of the pipeline's training stages, from the one merged config.

The baseline is the `model:` section as given (tier `auto`: standard) trained plainly: no
`regularization:` section and the training section's optimization keys at their defaults.
The optimized stages add what the switches turn on: the searched architecture
(`enable_nas`), the searched training keys (`enable_hyperparameter_opt`), the
regularization section (`enable_regularization`) and the training optimization keys
(`enable_training_opt`: precision, accumulation, checkpointing, attention kernel,
strategies, visit bucketing, memory budget, dropout generator).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hamnet_jax.config import Config, TrainingConfig
from hamnet_jax.config.run_config import AUTO_BASE_TIER

TRAINING_OPT_KEYS = ("precision_mode", "param_dtype", "gradient_accumulation_steps", "gradient_checkpointing",
                     "memory_efficient_attention", "enabled_strategies", "bucket_by_visits", "memory_budget_mb",
                     "dropout_rng")


def _plain_training(training: TrainingConfig) -> TrainingConfig:
    defaults = TrainingConfig()
    return dataclasses.replace(training, **{k: getattr(defaults, k) for k in TRAINING_OPT_KEYS})


def _without_regularization(config: Config) -> Config:
    return dataclasses.replace(config, sections={k: v for k, v in config.sections.items() if k != "regularization"},
                               given={k: v for k, v in config.given.items() if k != "regularization"})


def baseline_config(config: Config) -> Config:
    model = dict(config.model)
    if model.get("tier", "auto") == "auto":
        model["tier"] = AUTO_BASE_TIER
    return dataclasses.replace(_without_regularization(config), model=model,
                               training=_plain_training(config.training))


def optimized_config(config: Config, architecture: dict[str, Any] | None = None,
                     training: dict[str, Any] | None = None) -> Config:
    """The searched model's config: the baseline's with the switched-on additions."""
    switches = config.section("optimization")
    base = baseline_config(config)
    keep = {k: getattr(config.training, k) for k in TRAINING_OPT_KEYS} if switches.enable_training_opt else {}
    out = dataclasses.replace(base, model={**base.model, **(architecture or {})},
                              training=dataclasses.replace(base.training, **keep, **(training or {})))
    if switches.enable_regularization and "regularization" in config.sections:
        out = dataclasses.replace(out, sections={**out.sections, "regularization": config.sections["regularization"]},
                                  given={**out.given, "regularization": config.given.get("regularization", ())})
    return out


def trains_again(config: Config) -> bool:
    """Whether the optimized model differs from the baseline before compression."""
    s = config.section("optimization")
    return s.enable_nas or s.enable_hyperparameter_opt or s.enable_regularization or s.enable_training_opt


def search_base(config: Config) -> dict[str, Any]:
    """A study's base config (YAML sections): the baseline's model, data, training and general."""
    return {k: v for k, v in baseline_config(config).to_dict().items() if k in ("model", "data", "training",
                                                                                "general")}


def unused_keys(config: Config) -> list[str]:
    """`section.key`s the user gave that the switches leave out (said once, never silently)."""
    s = config.section("optimization")
    out = []
    if not s.enable_training_opt:
        out += [f"training.{k}" for k in config.given.get("training", ()) if k in TRAINING_OPT_KEYS]
    if not s.enable_regularization:
        out += [f"regularization.{k}" for k in config.given.get("regularization", ())]
    off = {"nas": s.enable_nas, "hyperparameter_optimization": s.enable_hyperparameter_opt,
           "pruning": s.enable_pruning, "quantization": s.quantization, "distillation": s.enable_distillation,
           "benchmarking": s.enable_benchmarking, "monitoring": s.enable_monitoring}
    for section, on in off.items():
        if not on:
            out += [f"{section}.{k}" for k in config.given.get(section, ())]
    return out
