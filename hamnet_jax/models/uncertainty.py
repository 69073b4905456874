"""Monte-Carlo dropout uncertainty (Gal & Ghahramani 2016; Kendall & Gal 2017).

Aleatoric variance is the mean of the predicted variances, epistemic variance the variance
of the predicted means over dropout samples; samples are drawn with `vmap` over RNG keys.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from hamnet_jax.data.batch import Batch
from hamnet_jax.models.hamnet import HAMNet


def predict_with_uncertainty(
    model: HAMNet, params: Any, batch: Batch, key: jax.Array, num_samples: int = 20
) -> dict[str, jax.Array]:
    """Mean and aleatoric / epistemic / total standard deviations, each [B]."""

    def one(k: jax.Array) -> tuple[jax.Array, jax.Array]:
        out, _ = model.apply({"params": params}, batch, deterministic=False, rngs={"dropout": k})
        return out["mean"], out["log_var"]

    means, log_vars = jax.vmap(one)(jax.random.split(key, num_samples))
    aleatoric = jnp.exp(log_vars).mean(axis=0)
    epistemic = means.var(axis=0)
    return {
        "mean": means.mean(axis=0),
        "aleatoric_std": jnp.sqrt(aleatoric),
        "epistemic_std": jnp.sqrt(epistemic),
        "total_std": jnp.sqrt(aleatoric + epistemic),
    }
