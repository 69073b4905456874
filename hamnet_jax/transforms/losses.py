"""Losses as pure functions picked by name."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

REGRESSION_LOSSES = ("gaussian_nll", "mse", "huber")


def gaussian_nll(mean: jax.Array, log_var: jax.Array, y: jax.Array) -> jax.Array:
    """Per-example negative log-likelihood of y under N(mean, exp(log_var))."""
    return 0.5 * (log_var + (y - mean) ** 2 * jnp.exp(-log_var) + math.log(2 * math.pi))


def regression_loss(outputs: dict, y: jax.Array, kind: str) -> jax.Array:
    """Per-example regression loss. For `mse` / `huber` the variance head still learns,
    by Gaussian NLL with the mean held fixed (stop_gradient), so intervals stay usable."""
    mean, log_var = outputs["mean"], outputs["log_var"]
    if kind == "gaussian_nll":
        return gaussian_nll(mean, log_var, y)
    variance_term = gaussian_nll(jax.lax.stop_gradient(mean), log_var, y)
    if kind == "mse":
        return (mean - y) ** 2 + variance_term
    if kind == "huber":
        return optax.huber_loss(mean, y, delta=1.0) + variance_term
    raise ValueError(f"unknown regression loss {kind!r}; expected one of {REGRESSION_LOSSES}")


def classification_loss(outputs: dict, labels: jax.Array) -> jax.Array:
    return optax.sigmoid_binary_cross_entropy(outputs["logits"], labels)


def task_loss(outputs: dict, targets: jax.Array, labels: jax.Array, kind: str, class_weight: float) -> jax.Array:
    """Per-example training objective: the regression loss `kind` when the model has a
    regression head, plus `class_weight` x the classification loss when it has a
    classification head (an outcome-only model: that loss alone, unweighted)."""
    if "mean" not in outputs:
        return classification_loss(outputs, labels)
    per_example = regression_loss(outputs, targets, kind)
    if "logits" in outputs:
        per_example = per_example + class_weight * classification_loss(outputs, labels)
    return per_example


def task_metrics(outputs: dict, targets: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    """Batch means a training step reports besides its loss: the absolute error of the mean
    (regression head) and the accuracy at 0.5 (classification head)."""
    metrics = {}
    if "mean" in outputs:
        metrics["abs_err"] = jnp.abs(outputs["mean"] - targets).mean()
    if "logits" in outputs:
        metrics["accuracy"] = ((outputs["logits"] > 0) == (labels > 0.5)).mean()
    return metrics
