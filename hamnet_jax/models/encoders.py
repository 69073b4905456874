"""Modality encoders: (values, feature mask) of one visit -> one modality token [N, E].

Missing features arrive zero-filled together with their mask, and the mask is an input
of every encoder, so "0 because missing" and "measured 0" stay distinguishable.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hamnet_jax.models.layers import BlockConfig, Dropout, GroupedDense, masked_mean
from hamnet_jax.models.logical import dense, layer_norm, logical_init
from hamnet_jax.models.numeric_embedding import PiecewiseLinearEmbedding


class DenseEncoder(nn.Module):
    """Clinical biomarkers and vitals: an MLP over [values, mask], or with `embedding_bins`
    over [each value's piecewise-linear embedding, mask] (models/numeric_embedding.py)."""

    embed_dim: int
    dropout: float = 0.0
    dtype: Any = jnp.float32
    hidden_dim: int = 0  # 0 = 2 * embed_dim
    embedding_bins: int = 0  # 0 = the raw values
    feature_embed_dim: int = 8  # width of a value's embedding when embedding_bins > 0

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, deterministic: bool) -> jax.Array:
        if self.embedding_bins:
            values = PiecewiseLinearEmbedding(self.embedding_bins, self.feature_embed_dim, self.dtype,
                                              name="embedding")(x, mask)
        else:
            values = x * mask
        h = jnp.concatenate([values, mask], axis=-1)
        h = nn.gelu(dense(self.hidden_dim or self.embed_dim * 2, ("features", "mlp"), self.dtype, "fc1")(h))
        h = Dropout(self.dropout)(h, deterministic=deterministic)
        h = dense(self.embed_dim, ("mlp", "embed"), self.dtype, "fc2")(h)
        return layer_norm("norm")(h)


class GroupTokenEncoder(nn.Module):
    """Imaging phenotypes and SNP dosages: features are cut into groups of `group_size`,
    each group becomes a token, and attention runs between the tokens of the modality
    before a masked mean pools them into the modality token. With `kept_offsets` (from a
    structured-pruning compaction) the projection of group g reads only those offsets of
    it; which tokens are present still follows every feature's mask."""

    embed_dim: int
    group_size: int
    blocks: BlockConfig
    kept_offsets: tuple[tuple[int, ...], ...] | None = None

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, deterministic: bool) -> jax.Array:
        n, width = x.shape
        groups = -(-width // self.group_size)
        pad = groups * self.group_size - width
        x = jnp.pad(x * mask, ((0, 0), (0, pad))).reshape(n, groups, self.group_size)
        m = jnp.pad(mask, ((0, 0), (0, pad))).reshape(n, groups, self.group_size)
        token_mask = (m.sum(-1) > 0).astype(jnp.float32)
        if self.kept_offsets is not None:  # one static gather of the kept columns
            kept = len(self.kept_offsets[0])
            flat = np.asarray([g * self.group_size + o for g, offs in enumerate(self.kept_offsets) for o in offs])
            x = x.reshape(n, -1)[:, flat].reshape(n, groups, kept)
            m = m.reshape(n, -1)[:, flat].reshape(n, groups, kept)
        proj = GroupedDense(self.embed_dim, self.blocks.dtype, name="group_proj")
        tokens = nn.gelu(proj(jnp.concatenate([x, m], -1)))
        tokens = self.blocks.block("block")(tokens, token_mask, deterministic)
        return layer_norm("norm")(masked_mean(tokens, token_mask, axis=1))


class LifestyleEncoder(nn.Module):
    """Diet, activity, smoking, alcohol: numeric values through a dense layer plus one
    learned embedding per categorical column (code 0 = missing maps to a zero vector)."""

    embed_dim: int
    cardinalities: tuple[int, ...]
    dropout: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, mask: jax.Array, codes: jax.Array, deterministic: bool
    ) -> jax.Array:
        h = jnp.zeros((codes.shape[0], self.embed_dim), self.dtype)
        if x.shape[-1]:
            h = h + dense(self.embed_dim, ("features", "embed"), self.dtype, "numeric")(
                jnp.concatenate([x * mask, mask], -1))
        for k, levels in enumerate(self.cardinalities):
            col = codes[:, k]
            emb = nn.Embed(levels + 1, self.embed_dim, dtype=self.dtype, name=f"embed_{k}",
                           embedding_init=logical_init(nn.initializers.variance_scaling(
                               1.0, "fan_in", "normal", out_axis=0), ("vocab", "embed")))(col)
            h = h + emb * (col > 0)[:, None].astype(self.dtype)
        h = nn.gelu(h)
        h = Dropout(self.dropout)(h, deterministic=deterministic)
        h = dense(self.embed_dim, ("embed", "embed_out"), self.dtype, "fc")(h)
        return layer_norm("norm")(h)
