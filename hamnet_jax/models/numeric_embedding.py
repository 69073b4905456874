"""Piecewise-linear encoding of numerical features (Gorishniy, Rubachev & Babenko 2022, "On
Embeddings for Numerical Features in Tabular Deep Learning", NeurIPS).

Each standardized scalar x becomes B + 1 components: x itself (so the map still extrapolates
linearly) and one ramp per bin, rising from 0 to 1 across the bin and constant outside it;
a per-feature linear map then turns them into a small embedding. A threshold, a hinge or a
saturating response of one marker is then a few weights of the first layer, where an MLP on
the raw value needs many units to bend its GELUs into the same shape: the feature-wise
non-linearity trees get for free (Grinsztajn et al. 2022).

The bin edges are the standard normal's quantiles 1/(B+2) ... (B+1)/(B+2): the preprocessor
z-scores every numeric feature, so the bins hold roughly equal shares of the training values
without being fitted to them (the paper's quantile bins), and an exported graph sees
constants only.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtri

from hamnet_jax.models.layers import GroupedDense


def quantile_edges(bins: int) -> np.ndarray:
    """The `bins` + 1 edges of `bins` ramps: standard normal quantiles, equal mass apart."""
    return ndtri(np.arange(1, bins + 2) / (bins + 2)).astype(np.float32)


def piecewise_linear(x: jax.Array, bins: int) -> jax.Array:
    """[..., F] standardized values -> [..., F, bins + 1]: x, then each bin's ramp in [0, 1]."""
    edges = quantile_edges(bins)
    ramps = jnp.clip((x[..., None] - edges[:-1]) / (edges[1:] - edges[:-1]), 0.0, 1.0)
    return jnp.concatenate([x[..., None], ramps.astype(x.dtype)], axis=-1)


class PiecewiseLinearEmbedding(nn.Module):
    """[N, F] values and their mask -> [N, F * width]: every feature's piecewise-linear
    encoding through its own linear map (GroupedDense: features are not exchangeable), zero
    where the value is missing (the mask travels beside it, so a missing value stays
    distinguishable from a measured one at any bin)."""

    bins: int
    width: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        encoded = piecewise_linear(x * mask, self.bins)  # [N, F, B + 1]
        embedded = GroupedDense(self.width, self.dtype, name="per_feature")(encoded) * mask[..., None]
        return embedded.reshape(x.shape[0], -1)
