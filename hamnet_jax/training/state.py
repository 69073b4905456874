"""Train state and optimizer: AdamW with warmup + cosine decay, clipping, and no weight
decay on biases and norms (selected by parameter path)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from hamnet_jax.data.batch import Batch
from hamnet_jax.models.hamnet import HAMNet, boxed_init
from hamnet_jax.training.precision import FP32, DynamicLossScale, PrecisionPolicy
from hamnet_jax.training.weight_averaging import weight_average
from hamnet_jax.transforms.select import weight_decay_mask


class TrainState(train_state.TrainState):
    """flax's TrainState (step, params, opt_state; apply_fn and tx static) plus the fp16
    loss scale (None unless the precision policy scales the loss)."""

    loss_scale: DynamicLossScale | None = None


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    total_steps: int = 1000
    clip_norm: float = 1.0
    end_lr_ratio: float = 0.02
    average_decay: float = 0.0  # > 0: keep a moving average of the weights (training/weight_averaging.py)


def make_optimizer(cfg: OptimizerConfig, moment_dtype: str = "float32") -> optax.GradientTransformation:
    warmup = max(cfg.warmup_steps, 1)
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=warmup,
        decay_steps=max(cfg.total_steps, warmup + 1), end_value=cfg.learning_rate * cfg.end_lr_ratio,
    )
    return optax.chain(
        optax.clip_by_global_norm(cfg.clip_norm),
        optax.adamw(schedule, weight_decay=cfg.weight_decay, mask=weight_decay_mask,
                    mu_dtype=jnp.dtype(moment_dtype)),
    )


def cast_params(params: Any, dtype: str) -> Any:
    """Weights (rank >= 2) in `dtype`; biases and norm gains stay float32."""
    if dtype == "float32":
        return params
    return jax.tree_util.tree_map(lambda p: p.astype(dtype) if p.ndim >= 2 else p, params)


def identity(x: Any) -> Any:
    return x


def state_init_fn(model: HAMNet, example: Batch, cfg: OptimizerConfig, policy: PrecisionPolicy = FP32,
                  wrap_apply: Callable[[Callable], Callable] = identity,
                  wrap_tx: Callable[[optax.GradientTransformation], optax.GradientTransformation] = identity,
                  state_cls: type[TrainState] = TrainState,
                  state_fields: dict[str, Any] | None = None) -> Callable[..., TrainState]:
    """(key, start=None) -> TrainState, pure: jit it plainly, or with `out_shardings` to build
    it sharded. `start`: the params to begin from, passed as an argument (not baked into the
    program as constants); None: the model's seeded init. `wrap_apply` / `wrap_tx` /
    `state_cls` / `state_fields` come from a `training.plan.Plan`. With `cfg.average_decay` the
    chain ends in the weights' moving average, after the plan's wrapper: it averages the
    weights as the step leaves them."""
    tx = wrap_tx(make_optimizer(cfg, policy.moment_dtype))
    if cfg.average_decay:
        tx = optax.chain(tx, weight_average(cfg.average_decay))
    apply_fn = wrap_apply(model.apply)

    def init(key: jax.Array, start: Any = None) -> TrainState:
        start = nn.unbox(boxed_init(model, example, key)) if start is None else start
        params = cast_params(start, policy.param_dtype)
        scale = DynamicLossScale.create() if policy.loss_scaling else None
        return state_cls.create(apply_fn=apply_fn, params=params, tx=tx, loss_scale=scale, **(state_fields or {}))

    return init


def create_train_state(model: HAMNet, example: Batch, key: jax.Array, cfg: OptimizerConfig,
                       policy: PrecisionPolicy = FP32) -> TrainState:
    return jax.jit(state_init_fn(model, example, cfg, policy))(key)


def count_params(params: Any) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
