"""Monte-Carlo dropout uncertainty (Gal & Ghahramani 2016; Kendall & Gal 2017).

Aleatoric variance is the mean of the predicted variances, epistemic variance the variance
of the predicted means over K dropout samples, run with `vmap` over K fixed mask sets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from hamnet_jax.data.batch import Batch
from hamnet_jax.models.hamnet import HAMNet
from hamnet_jax.models.mc_dropout import dropout_masks, mc_samples

Z90 = 1.6448536269514722  # two-sided 90% normal quantile


def mc_statistics(samples: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Over the leading sample axis of `samples` (`mean`, `log_var` and / or `logits`, each
    [K, B]): the mean and aleatoric / epistemic / total standard deviations of the
    regression head, and the MC-averaged outcome probability with its spread over the K
    samples (`probability`, `probability_std`) of the classification head."""
    result = {}
    if "mean" in samples:
        means = samples["mean"]
        aleatoric = jnp.exp(samples["log_var"]).mean(axis=0)
        epistemic = means.var(axis=0)
        result.update(mean=means.mean(axis=0), aleatoric_std=jnp.sqrt(aleatoric),
                      epistemic_std=jnp.sqrt(epistemic), total_std=jnp.sqrt(aleatoric + epistemic))
    if "logits" in samples:
        probabilities = jax.nn.sigmoid(samples["logits"])
        result.update(probability=probabilities.mean(axis=0), probability_std=probabilities.std(axis=0))
    return result


def predict_with_uncertainty(
    model: HAMNet | Callable, params: Any, batch: Batch, key: jax.Array, num_samples: int = 20,
    packed_visits: int = 0,
) -> dict[str, jax.Array]:
    """`mc_statistics` (mean and aleatoric / epistemic / total standard deviations, and / or
    the outcome probability and its spread, each [B]) over `num_samples`
    dropout mask sets drawn from `key` and shared by every subject (models/mc_dropout.py:
    a subject's result does not depend on the rest of the batch). `model` is a HAMNet or
    an apply function with its signature (a quantized model's execution path);
    `packed_visits`: its `HAMNet(packed_visits=)` rows for the batch tiled `num_samples` times."""
    apply = model.apply if isinstance(model, HAMNet) else model
    mask_key, other_key = jax.random.split(key)
    masks = dropout_masks(apply, params, batch, mask_key, num_samples)
    return mc_statistics(mc_samples(apply, params, batch, masks, other_key, num_samples, packed_visits))
