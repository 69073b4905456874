"""Building blocks shared by the encoders, the fusion and the temporal layer."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

NEG_INF = -1e9


def masked_softmax(scores: jax.Array, mask: jax.Array, axis: int = -1) -> jax.Array:
    """Softmax over `axis` that gives zero weight where `mask` is 0 (uniform if all are 0)."""
    scores = jnp.where(mask > 0, scores, NEG_INF)
    return jax.nn.softmax(scores, axis=axis)


def masked_mean(x: jax.Array, mask: jax.Array, axis: int) -> jax.Array:
    """Mean of `x` over `axis` counting only positions where `mask` ([..., T]) is 1."""
    weights = mask[..., None]
    return (x * weights).sum(axis) / jnp.maximum(weights.sum(axis), 1.0)


class MLP(nn.Module):
    """Two dense layers with GELU and dropout: the transformer feed-forward block."""

    hidden: int
    out: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        x = nn.gelu(nn.Dense(self.hidden, name="fc1")(x))
        x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
        return nn.Dense(self.out, name="fc2")(x)


class GatedAttentionBlock(nn.Module):
    """Pre-norm self-attention + MLP, each added through a learned sigmoid gate.

    `mask` [N, T] is a key padding mask: absent tokens (missing modalities, padded visits)
    are never attended to, and their outputs are zeroed so they cannot leak downstream.
    """

    num_heads: int
    mlp_ratio: int = 2
    dropout: float = 0.0
    attention_dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, deterministic: bool) -> jax.Array:
        width = x.shape[-1]
        attn_mask = nn.make_attention_mask(jnp.ones_like(mask), mask)
        h = nn.LayerNorm(name="norm_attn")(x)
        h = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            dropout_rate=self.attention_dropout,
            deterministic=deterministic,
            name="attn",
        )(h, mask=attn_mask)
        h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
        x = x + jax.nn.sigmoid(nn.Dense(width, name="gate_attn")(h)) * h
        h = nn.LayerNorm(name="norm_mlp")(x)
        h = MLP(width * self.mlp_ratio, width, self.dropout, name="mlp")(h, deterministic)
        h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
        x = x + jax.nn.sigmoid(nn.Dense(width, name="gate_mlp")(h)) * h
        return x * mask[..., None]


class GroupedDense(nn.Module):
    """A separate dense map per token group: [N, G, F] -> [N, G, E].

    Equivalent to one block-diagonal dense layer, so every feature keeps its own weight
    (SNPs and imaging phenotypes are not exchangeable within a group).
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        groups, width = x.shape[-2], x.shape[-1]
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(batch_axis=(0,)), (groups, width, self.features)
        )
        bias = self.param("bias", nn.initializers.zeros, (groups, self.features))
        return jnp.einsum("ngf,gfe->nge", x, kernel) + bias
