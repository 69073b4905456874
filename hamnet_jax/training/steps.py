"""Jitted `train_step` and `eval_step`: short, pure, one job each."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from hamnet_jax.data.batch import Batch
from hamnet_jax.training.losses import classification_loss, regression_loss
from hamnet_jax.training.state import TrainState


def loss_fn(params: Any, state: TrainState, batch: Batch, key: jax.Array, loss: str,
            class_weight: float) -> tuple[jax.Array, dict]:
    outputs, _ = state.apply_fn({"params": params}, batch, deterministic=False, rngs={"dropout": key})
    per_example = regression_loss(outputs, batch.targets, loss)
    if "logits" in outputs:
        per_example = per_example + class_weight * classification_loss(outputs, batch.labels)
    total = per_example.mean()
    return total, {"loss": total, "abs_err": jnp.abs(outputs["mean"] - batch.targets).mean()}


@functools.partial(jax.jit, static_argnames=("loss", "class_weight"), donate_argnums=(0,))
def train_step(state: TrainState, batch: Batch, key: jax.Array, loss: str = "gaussian_nll",
               class_weight: float = 1.0) -> tuple[TrainState, dict]:
    """One optimizer step; `key` seeds dropout. Returns the new state and batch metrics."""
    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, state, batch, key, loss, class_weight)
    metrics["grad_norm"] = optax.tree.norm(grads)
    return state.apply_gradients(grads=grads), metrics


@functools.partial(jax.jit, static_argnames=("apply_fn",))
def eval_step(apply_fn: Any, params: Any, batch: Batch) -> dict:
    """Deterministic forward pass: the model's outputs (mean, log_var[, logits])."""
    outputs, _ = apply_fn({"params": params}, batch, deterministic=True)
    return outputs
