"""Regularizers on the fused subject embedding and on paired predictions.

* `input_affinity`: a Gaussian-kernel graph over the subjects of a batch from their
  observed inputs (squared distance averaged over co-observed features, bandwidth the
  median distance).
* `manifold_smoothness` (Belkin et al. 2006, "Manifold Regularization"): the graph
  Laplacian quadratic form tr(Z^T L Z) = 1/2 sum_ij W_ij |z_i - z_j|^2 of the fused
  embeddings, divided by the same sum with uniform weights, so the embedding's overall
  scale cannot shrink the penalty: subjects close in input space are pulled together
  relative to the rest of the batch.
* `information_bottleneck_kl` (Alemi et al. 2017): KL(N(mu, sigma^2) || N(0, I)) of the
  model's bottleneck code (HAMNetConfig.information_bottleneck), summed over dims.
* `consistency` (Laine & Aila 2017, Pi-model): squared difference of the predicted means of
  two stochastic passes (different dropout and augmentation) of the same subjects.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hamnet_jax.data.batch import Batch


def input_affinity(batch: Batch) -> jax.Array:
    """[B, B] affinities from masked squared input distances (stop-gradient constants)."""
    b = batch.size
    sq = jnp.zeros((b, b), jnp.float32)
    count = jnp.zeros((b, b), jnp.float32)
    for m in batch.inputs:
        x = batch.inputs[m].reshape(b, -1).astype(jnp.float32)
        w = batch.feature_masks[m].reshape(b, -1).astype(jnp.float32)
        both = w @ w.T
        # sum_f w_if w_jf (x_if - x_jf)^2 expanded into matrix products
        sq = sq + (w * x**2) @ w.T + w @ (w * x**2).T - 2.0 * (w * x) @ (w * x).T
        count = count + both
    d = jnp.where(count > 0, sq / jnp.maximum(count, 1.0), jnp.inf)
    finite = jnp.where(jnp.isfinite(d), d, jnp.nan)
    bandwidth = jnp.nanmedian(finite) + 1e-6
    affinity = jnp.where(jnp.isfinite(d), jnp.exp(-d / bandwidth), 0.0) * (1.0 - jnp.eye(b))
    return jax.lax.stop_gradient(affinity)


def manifold_smoothness(embeddings: jax.Array, affinity: jax.Array) -> jax.Array:
    z = embeddings.astype(jnp.float32)
    sq = jnp.sum((z[:, None, :] - z[None, :, :]) ** 2, -1)
    off = 1.0 - jnp.eye(z.shape[0])
    local = (affinity * sq).sum() / jnp.maximum(affinity.sum(), 1e-12)
    overall = (off * sq).sum() / jnp.maximum(off.sum(), 1.0)
    return local / (overall + 1e-6)


def information_bottleneck_kl(aux: dict) -> jax.Array:
    if "bottleneck_mean" not in aux:
        raise ValueError("information_bottleneck_kl needs a model built with "
                         "HAMNetConfig(information_bottleneck=True) (aux has no 'bottleneck_mean')")
    mu, log_var = aux["bottleneck_mean"], aux["bottleneck_log_var"]
    return (0.5 * (jnp.exp(log_var) + mu**2 - 1.0 - log_var)).sum(-1).mean()


def consistency(outputs_a: dict, outputs_b: dict) -> jax.Array:
    """Mean squared difference of two passes' predictions: the regression mean, or the
    logit of an outcome-only model."""
    key = "mean" if "mean" in outputs_a else "logits"
    return jnp.mean((outputs_a[key] - outputs_b[key]) ** 2)
