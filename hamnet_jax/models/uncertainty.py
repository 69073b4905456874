"""Monte-Carlo dropout uncertainty (Gal & Ghahramani 2016; Kendall & Gal 2017).

Aleatoric variance is the mean of the predicted variances, epistemic variance the variance
of the predicted means over dropout samples; samples are drawn with `vmap` over RNG keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from hamnet_jax.data.batch import Batch
from hamnet_jax.models.hamnet import HAMNet

Z90 = 1.6448536269514722  # two-sided 90% normal quantile


def predict_with_uncertainty(
    model: HAMNet | Callable, params: Any, batch: Batch, key: jax.Array, num_samples: int = 20
) -> dict[str, jax.Array]:
    """Mean and aleatoric / epistemic / total standard deviations, each [B]
    (plus `probability` [B] when the model has a classification head). `model` is a HAMNet
    or an apply function with its signature (a quantized model's execution path)."""
    apply = model.apply if isinstance(model, HAMNet) else model

    def one(k: jax.Array) -> dict[str, jax.Array]:
        out, _ = apply({"params": params}, batch, deterministic=False, rngs={"dropout": k})
        return out

    samples = jax.vmap(one)(jax.random.split(key, num_samples))
    means = samples["mean"]
    aleatoric = jnp.exp(samples["log_var"]).mean(axis=0)
    epistemic = means.var(axis=0)
    result = {
        "mean": means.mean(axis=0),
        "aleatoric_std": jnp.sqrt(aleatoric),
        "epistemic_std": jnp.sqrt(epistemic),
        "total_std": jnp.sqrt(aleatoric + epistemic),
    }
    if "logits" in samples:  # MC-averaged outcome probability of the classification head
        result["probability"] = jax.nn.sigmoid(samples["logits"]).mean(axis=0)
    return result
