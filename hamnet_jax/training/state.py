"""Train state and optimizer: AdamW with warmup + cosine decay, clipping, and no weight
decay on biases and norms (selected by parameter path)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import optax
from flax.training import train_state

from hamnet_jax.data.batch import Batch
from hamnet_jax.models.hamnet import HAMNet, init_params
from hamnet_jax.transforms.select import weight_decay_mask


class TrainState(train_state.TrainState):
    """flax's TrainState: step, params, opt_state (pytree) + apply_fn and tx (static)."""


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    total_steps: int = 1000
    clip_norm: float = 1.0
    end_lr_ratio: float = 0.02


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=max(cfg.warmup_steps, 1),
        decay_steps=max(cfg.total_steps, cfg.warmup_steps + 1), end_value=cfg.learning_rate * cfg.end_lr_ratio,
    )
    return optax.chain(
        optax.clip_by_global_norm(cfg.clip_norm),
        optax.adamw(schedule, weight_decay=cfg.weight_decay, mask=weight_decay_mask),
    )


def create_train_state(model: HAMNet, example: Batch, key: jax.Array, cfg: OptimizerConfig) -> TrainState:
    params = init_params(model, example, key)
    return TrainState.create(apply_fn=model.apply, params=params, tx=make_optimizer(cfg))


def count_params(params: Any) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
