"""`regularized_step`: one optimizer step with the enabled regularization techniques.

Its own short step (DESIGN example 9): augment the batch, draw DropConnect params, run the
model (whose apply already carries the dropout kind and stochastic depth, see
`HAMNetRegularizer.prepare_model`), add the task loss (with smoothed labels when enabled)
and the weighted terms of `regularization_terms`. Decoupled weight decay and spectral
normalization live in the optimizer, not here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from hamnet_jax.data.batch import Batch
from hamnet_jax.models.config import HAMNetConfig
from hamnet_jax.transforms.losses import task_loss, task_metrics
from hamnet_jax.training.plan import Plan
from hamnet_jax.training.state import TrainState
from hamnet_jax.training.steps import train_step_fn
from hamnet_jax.transforms.dropout_variants import drop_connect, training_behaviour
from hamnet_jax.transforms.penalties import spectral_norm_optax
from hamnet_jax.transforms.regularization import (SPECTRAL_RULES, R, RegularizationConfig, prepare_batch,
                                                  regularization_terms, smooth_labels)
from hamnet_jax.transforms.select import weight_decay_mask


def regularized_loss_fn(params: Any, state: TrainState, batch: Batch, key: jax.Array, config: RegularizationConfig,
                        loss: str, class_weight: float) -> tuple[jax.Array, dict]:
    k_data, k_connect, k_forward, k_terms = jax.random.split(key, 4)
    batch = prepare_batch(batch, k_data, config)
    used = params
    if config.on(R.DROPCONNECT):
        used = drop_connect(params, k_connect, config.drop_connect_rate, weight_decay_mask(params))

    def forward(b: Batch, k: jax.Array) -> tuple[dict, dict]:
        return state.apply_fn({"params": used}, b, deterministic=False, rngs={"dropout": k})

    outputs, aux = forward(batch, k_forward)
    labels = smooth_labels(batch.labels, config.label_smoothing) if config.on(R.LABEL_SMOOTHING) else batch.labels
    task = task_loss(outputs, batch.targets, labels, loss, class_weight).mean()
    terms = regularization_terms(config, params, batch, outputs, aux, forward, k_terms, loss, class_weight)
    total = task + sum(terms.values(), jnp.float32(0))
    metrics = {"loss": total, "task_loss": task, **task_metrics(outputs, batch.targets, batch.labels),
               **{f"reg_{k}": v for k, v in terms.items()}}
    return total, metrics


def regularized_step_fn(state: TrainState, batch: Batch, key: jax.Array, config: RegularizationConfig,
                        loss: str = "gaussian_nll", class_weight: float = 1.0,
                        accumulation_steps: int = 1) -> tuple[TrainState, dict]:
    """`train_step_fn` on the regularized objective (accumulation and loss scaling included)."""
    objective = functools.partial(regularized_loss_fn, config=config, loss=loss, class_weight=class_weight)
    return train_step_fn(state, batch, key, accumulation_steps=accumulation_steps, objective=objective)


regularized_step = functools.partial(jax.jit, static_argnames=("config", "loss", "class_weight"),
                                     donate_argnums=(0,))(regularized_step_fn)


def regularized_model_config(config: HAMNetConfig, reg: RegularizationConfig) -> HAMNetConfig:
    """`config` with the dropout rate (0 when no dropout technique is enabled) and the VIB
    bottleneck set as the techniques ask."""
    return config.replace(dropout=reg.dropout_rate if reg.dropout_kind else 0.0,
                          information_bottleneck=reg.on(R.INFORMATION_BOTTLENECK) or config.information_bottleneck)


def regularized_weight_decay(reg: RegularizationConfig) -> float:
    """Decoupled (AdamW) weight decay: the configured value when enabled, else 0."""
    return reg.weight_decay if reg.on(R.WEIGHT_DECAY) else 0.0


def regularized_optimizer(reg: RegularizationConfig) -> Callable[[optax.GradientTransformation],
                                                                 optax.GradientTransformation]:
    """Wraps the optimizer with spectral normalization when it is enabled."""
    def wrap(tx: optax.GradientTransformation) -> optax.GradientTransformation:
        if not reg.on(R.SPECTRAL_NORM):
            return tx
        return optax.chain(tx, spectral_norm_optax(SPECTRAL_RULES, reg.spectral_max_norm, reg.spectral_iterations))

    return wrap


def regularized_apply(reg: RegularizationConfig, config: HAMNetConfig) -> Callable[[Callable], Callable]:
    """Wraps an apply with the configured dropout kind and stochastic depth (training only)."""
    depth = reg.stochastic_depth_rate if reg.on(R.STOCHASTIC_DEPTH) else 0.0
    return lambda apply: training_behaviour(apply, config, reg.dropout_kind or "standard", depth)


def regularized_plan(reg: RegularizationConfig, config: HAMNetConfig, params: Any = None,
                     loss: str = "gaussian_nll", class_weight: float = 1.0) -> Plan:
    """The `fit` plan of regularized training (`config` already through
    `regularized_model_config`): the regularized objective, the prepared apply and the
    optimizer wrapper."""
    return Plan(init_params=params, wrap_apply=regularized_apply(reg, config), wrap_tx=regularized_optimizer(reg),
                objective=functools.partial(regularized_loss_fn, config=reg, loss=loss, class_weight=class_weight))
