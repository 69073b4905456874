"""Cross-modal fusion: attention between the modality tokens of one visit, then a learned,
masked weighting of the modalities into one visit embedding."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hamnet_jax.models.layers import attention_block, masked_softmax
from hamnet_jax.models.logical import dense, layer_norm, logical_init


class CrossModalFusion(nn.Module):
    """[N, M, E] modality tokens + [N, M] presence mask -> ([N, E] fused, [N, M] weights)."""

    num_layers: int
    num_heads: int
    mlp_ratio: int = 2
    dropout: float = 0.0
    attention_dropout: float = 0.0
    attention: str = "naive"
    attention_block_size: int = 64
    remat: str = "none"
    dtype: Any = jnp.float32
    head_dim: int = 0
    mlp_dim: int = 0

    @nn.compact
    def __call__(
        self, tokens: jax.Array, mask: jax.Array, deterministic: bool
    ) -> tuple[jax.Array, jax.Array]:
        type_embed = self.param("modality_embed", logical_init(nn.initializers.normal(0.02), (None, "embed")),
                                tokens.shape[1:])
        x = (tokens + type_embed) * mask[..., None]
        for i in range(self.num_layers):
            x = attention_block(self.remat)(
                self.num_heads, self.mlp_ratio, self.dropout, self.attention_dropout, self.attention,
                self.attention_block_size, self.dtype, self.head_dim, self.mlp_dim, name=f"block_{i}",
            )(x, mask, deterministic)
        x = layer_norm("norm")(x)
        weights = masked_softmax(dense(1, ("embed", None), jnp.float32, "modality_score")(x)[..., 0], mask)
        return (weights[..., None] * x).sum(axis=1), weights
