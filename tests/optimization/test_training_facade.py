"""The `HAMNetTrainingOptimizer` facade: original names, YAML `training:` section."""

from __future__ import annotations

import jax
import numpy as np
import yaml

from hamnet_jax.config import TrainingConfig
from hamnet_jax.data.batch import random_batch
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.optimization.training_optimization import (
    HAMNetTrainingOptimizer, OptimizationStrategy, PrecisionMode, TrainingOptimizationConfig,
)

CFG = HAMNetConfig.from_tier("base", clinical_dim=12, imaging_dim=0, genetic_dim=0, lifestyle_dim=4,
                             lifestyle_cardinalities=(3,), dropout=0.0)


def test_facade_trains_with_strategies():
    config = TrainingOptimizationConfig(
        precision_mode=PrecisionMode.FP32,
        enabled_strategies=[OptimizationStrategy.GRADIENT_ACCUMULATION, OptimizationStrategy.DYNAMIC_BATCHING,
                    OptimizationStrategy.MEMORY_EFFICIENT_ATTENTION],
        gradient_accumulation_steps=2,
        base=TrainingConfig(batch_size=16, eval_batch_size=64, early_stop_patience=0),
    )
    # two visit slots: dynamic batching compiles one step per visit count, so two compiles, not four
    params, summary = HAMNetTrainingOptimizer(CFG, config).train(
        random_batch(CFG, 64, 2, seed=1), random_batch(CFG, 16, 2, seed=2), epochs=2)
    assert summary["epochs_run"] == 2 and summary["batch_size"] == 16
    assert summary["attention"] == "dot_product" and summary["gradient_accumulation_steps"] == 2
    assert summary["padding_fraction_after"] < summary["padding_fraction_before"]
    assert summary["train_samples_per_s"] > 0
    assert summary["optimization_summary"]["strategies"] == ["gradient_accumulation", "dynamic_batching",
                                                             "memory_efficient_attention"]
    assert np.isfinite(summary["best_val_loss"])
    assert summary["params"] == sum(p.size for p in jax.tree_util.tree_leaves(params))


def test_config_from_yaml_training_section(tmp_path):
    path = tmp_path / "hamnet_config.yaml"
    path.write_text(yaml.safe_dump({"training": {
        "precision_mode": "bf16", "gradient_accumulation_steps": 4, "gradient_checkpointing": True,
        "memory_efficient_attention": "blockwise", "enabled_strategies": ["fsdp"], "batch_size": 64}}))
    config = TrainingOptimizationConfig.from_yaml(path)
    cfg = config.training_config(epochs=3)
    assert (cfg.precision_mode, cfg.gradient_accumulation_steps, cfg.gradient_checkpointing) == ("bf16", 4, "full")
    assert cfg.memory_efficient_attention == "blockwise" and cfg.mesh == {"fsdp": -1}
    assert cfg.batch_size == 64 and cfg.num_epochs == 3


def test_original_names_and_validation_at_construction():
    import pytest

    from hamnet_jax.errors import InputError

    assert PrecisionMode.AUTOMATIC_MIXED is PrecisionMode.MIXED
    config = TrainingOptimizationConfig(precision_mode=PrecisionMode.AUTOMATIC_MIXED, gradient_accumulation_steps=4,
                                        gradient_checkpointing=True, memory_efficient_attention=True,
                                        enabled_strategies=[OptimizationStrategy.GRADIENT_ACCUMULATION])
    assert config.training_config().precision_mode == "mixed"
    with pytest.raises(InputError, match="training.gradient_accumulation_steps"):
        TrainingOptimizationConfig(enabled_strategies=[OptimizationStrategy.GRADIENT_ACCUMULATION])
    with pytest.raises(InputError, match="training.precision_mode"):
        TrainingOptimizationConfig(precision_mode="fp7")
