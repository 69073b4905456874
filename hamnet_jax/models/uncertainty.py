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


def mc_masks(model: HAMNet | Callable, params: Any, batch: Batch, key: jax.Array, num_samples: int = 20) -> tuple:
    """The `num_samples` dropout mask sets `predict_with_uncertainty` draws from `key` (only
    the batch's shapes matter: models/mc_dropout.py)."""
    return dropout_masks(_apply(model), params, batch, jax.random.split(key)[0], num_samples)


def predict_with_masks(model: HAMNet | Callable, params: Any, batch: Batch, masks: tuple, key: jax.Array,
                       num_samples: int = 20, packed_visits: int = 0) -> dict[str, jax.Array]:
    """`predict_with_uncertainty` under given `mc_masks(model, params, batch, key, num_samples)`."""
    other_key = jax.random.split(key)[1]
    return mc_statistics(mc_samples(_apply(model), params, batch, masks, other_key, num_samples, packed_visits))


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
    masks = mc_masks(model, params, batch, key, num_samples)
    return predict_with_masks(model, params, batch, masks, key, num_samples, packed_visits)


def _apply(model: HAMNet | Callable) -> Callable:
    return model.apply if isinstance(model, HAMNet) else model
