"""Losses as pure functions picked by name."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

REGRESSION_LOSSES = ("gaussian_nll", "beta_nll", "mse", "huber")
BETA_NLL = 0.5  # Seitzer et al. 2022 recommend beta = 0.5


def gaussian_nll(mean: jax.Array, log_var: jax.Array, y: jax.Array) -> jax.Array:
    """Per-example negative log-likelihood of y under N(mean, exp(log_var))."""
    return 0.5 * (log_var + (y - mean) ** 2 * jnp.exp(-log_var) + math.log(2 * math.pi))


def beta_nll(mean: jax.Array, log_var: jax.Array, y: jax.Array, beta: float = BETA_NLL) -> jax.Array:
    """β-NLL (Seitzer et al. 2022, "On the Pitfalls of Heteroscedastic Uncertainty
    Estimation with Probabilistic Neural Networks"): the Gaussian NLL weighted per example
    by stop_gradient(σ^(2β)). Plain NLL scales the mean's gradient by 1/σ², so examples the
    variance head already calls noisy stop teaching the mean; β = 1 gives the mean MSE's
    gradient, β = 0 the NLL's."""
    return jax.lax.stop_gradient(jnp.exp(beta * log_var)) * gaussian_nll(mean, log_var, y)


def regression_loss(outputs: dict, y: jax.Array, kind: str) -> jax.Array:
    """Per-example regression loss. For `mse` / `huber` the variance head still learns,
    by Gaussian NLL with the mean held fixed (stop_gradient), so intervals stay usable."""
    mean, log_var = outputs["mean"], outputs["log_var"]
    if kind == "gaussian_nll":
        return gaussian_nll(mean, log_var, y)
    if kind == "beta_nll":
        return beta_nll(mean, log_var, y)
    variance_term = gaussian_nll(jax.lax.stop_gradient(mean), log_var, y)
    if kind == "mse":
        return (mean - y) ** 2 + variance_term
    if kind == "huber":
        return optax.huber_loss(mean, y, delta=1.0) + variance_term
    raise ValueError(f"unknown regression loss {kind!r}; expected one of {REGRESSION_LOSSES}")


def probability_log_loss(labels: jax.Array, probability: jax.Array, eps: float = 1e-7) -> jax.Array:
    """Per-example log loss of predicted probabilities (not logits: what predictions and
    exported graphs output), clipped to [eps, 1 - eps] so a confident miss stays finite."""
    p = jnp.clip(jnp.asarray(probability, jnp.float32), eps, 1 - eps)
    y = jnp.asarray(labels, jnp.float32)
    return -(y * jnp.log(p) + (1 - y) * jnp.log1p(-p))


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
