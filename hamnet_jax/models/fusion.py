"""Cross-modal fusion: attention between the modality tokens of one visit, then a learned,
masked weighting of the modalities into one visit embedding."""

from __future__ import annotations

import flax.linen as nn
import jax

from hamnet_jax.models.layers import GatedAttentionBlock, masked_softmax


class CrossModalFusion(nn.Module):
    """[N, M, E] modality tokens + [N, M] presence mask -> ([N, E] fused, [N, M] weights)."""

    num_layers: int
    num_heads: int
    mlp_ratio: int = 2
    dropout: float = 0.0
    attention_dropout: float = 0.0

    @nn.compact
    def __call__(
        self, tokens: jax.Array, mask: jax.Array, deterministic: bool
    ) -> tuple[jax.Array, jax.Array]:
        type_embed = self.param("modality_embed", nn.initializers.normal(0.02), tokens.shape[1:])
        x = (tokens + type_embed) * mask[..., None]
        for i in range(self.num_layers):
            x = GatedAttentionBlock(
                self.num_heads, self.mlp_ratio, self.dropout, self.attention_dropout, name=f"block_{i}"
            )(x, mask, deterministic)
        x = nn.LayerNorm(name="norm")(x)
        weights = masked_softmax(nn.Dense(1, name="modality_score")(x)[..., 0], mask)
        return (weights[..., None] * x).sum(axis=1), weights
