"""`HAMNetTrainingOptimizer`: the original framework's training-optimization facade.

    from hamnet_jax.optimization.training_optimization import (
        HAMNetTrainingOptimizer, OptimizationStrategy, PrecisionMode, TrainingOptimizationConfig)

    opt = HAMNetTrainingOptimizer(model_config, TrainingOptimizationConfig(
        precision_mode=PrecisionMode.BF16,
        strategies=[OptimizationStrategy.GRADIENT_ACCUMULATION, OptimizationStrategy.DYNAMIC_BATCHING],
        gradient_accumulation_steps=4))
    params, summary = opt.train(train_batch, val_batch, epochs=20)

A thin layer: the options become a `TrainingConfig` (the YAML `training:` section, same
keys) and `training.loop.fit` does the work on the mesh the config describes.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from hamnet_jax.config import TrainingConfig, load_config
from hamnet_jax.data.batch import Batch
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.training.dynamic_batching import epoch_batches, padding_fraction
from hamnet_jax.training.loop import fit
from hamnet_jax.training.precision import PrecisionMode, resolve_policy
from hamnet_jax.training.sharding import make_mesh
from hamnet_jax.training.state import count_params
from hamnet_jax.config.strategies import OptimizationStrategy

__all__ = ["HAMNetTrainingOptimizer", "OptimizationStrategy", "PrecisionMode", "TrainingOptimizationConfig"]


@dataclasses.dataclass(frozen=True)
class TrainingOptimizationConfig:
    """Training-optimization options with the original names; `base` carries the rest of
    the training hyperparameters (batch size, learning rate, epochs, seed, ...). Checked at
    construction: a bad value raises `InputError` naming the training key."""

    precision_mode: PrecisionMode | str = PrecisionMode.FP32
    enabled_strategies: Sequence[OptimizationStrategy | str] = ()
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool | str = False
    memory_efficient_attention: bool | str = False
    mesh: dict[str, int] | None = None
    memory_budget_mb: float = 0.0
    base: TrainingConfig = TrainingConfig()

    def __post_init__(self) -> None:
        self.training_config()  # validates every value now, not at train time

    @classmethod
    def from_training_config(cls, cfg: TrainingConfig) -> TrainingOptimizationConfig:
        return cls(cfg.precision_mode, cfg.enabled_strategies, cfg.gradient_accumulation_steps,
                   cfg.gradient_checkpointing, cfg.memory_efficient_attention, dict(cfg.mesh),
                   cfg.memory_budget_mb, cfg)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> TrainingOptimizationConfig:
        """From the `training:` section of a hamnet_config.yaml."""
        return cls.from_training_config(load_config(path, environ={}).training)

    def training_config(self, epochs: int | None = None) -> TrainingConfig:
        mode = self.precision_mode.value if isinstance(self.precision_mode, PrecisionMode) else self.precision_mode
        return dataclasses.replace(
            self.base, precision_mode=mode,
            enabled_strategies=tuple(s.value if isinstance(s, OptimizationStrategy) else s
                                     for s in self.enabled_strategies),
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            gradient_checkpointing=self.gradient_checkpointing,  # bools resolve in TrainingConfig
            memory_efficient_attention=self.memory_efficient_attention,
            mesh=dict(self.mesh or self.base.mesh), memory_budget_mb=self.memory_budget_mb,
            num_epochs=epochs or self.base.num_epochs,
        )


class HAMNetTrainingOptimizer:
    def __init__(self, model_config: HAMNetConfig, config: TrainingOptimizationConfig | None = None):
        self.model_config = model_config
        self.config = config or TrainingOptimizationConfig()

    def train(self, train_data: Batch, val_data: Batch, epochs: int | None = None,
              checkpoint_dir: str | Path | None = None, resume: bool = False) -> tuple[Any, dict[str, Any]]:
        """Train with the configured strategies; returns (best params, summary)."""
        cfg = self.config.training_config(epochs)
        start = time.perf_counter()
        result = fit(self.model_config, cfg, train_data, val_data, checkpoint_dir=checkpoint_dir, resume=resume)
        wall = time.perf_counter() - start
        counts = train_data.visit_counts()
        visits = int(np.shape(train_data.visit_mask)[1])
        before = padding_fraction(counts, epoch_batches(counts, result.batch_size, np.random.default_rng(0),
                                                        visits, bucket=False))
        after = padding_fraction(counts, epoch_batches(counts, result.batch_size, np.random.default_rng(0),
                                                       visits, bucket=cfg.bucket_by_visits))
        samples = len(result.history) * (train_data.size // result.batch_size) * result.batch_size
        policy = resolve_policy(cfg.precision_mode, param_dtype=cfg.param_dtype)
        summary = {
            "precision": dataclasses.asdict(policy), "strategies": list(cfg.enabled_strategies),
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
            "gradient_checkpointing": cfg.gradient_checkpointing,
            "attention": cfg.memory_efficient_attention, "mesh": dict(make_mesh(cfg.mesh).shape),
            "processes": jax.process_count(), "batch_size": result.batch_size,
            "padding_fraction_before": before, "padding_fraction_after": after,
            "epochs_run": len(result.history), "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss, "stopped_early": result.stopped_early,
            "history": result.history, "wall_s": wall, "train_samples_per_s": samples / wall,
            "params": count_params(result.params),
        }
        summary["optimization_summary"] = {  # the original framework's key: what was switched on, and the speed
            "precision": policy.compute_dtype, "strategies": list(cfg.enabled_strategies),
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps, "mesh": summary["mesh"],
            "train_samples_per_s": summary["train_samples_per_s"], "wall_s": wall,
        }
        return result.params, summary
