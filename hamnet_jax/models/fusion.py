"""Cross-modal fusion: attention between the modality tokens of one visit, then a learned,
masked weighting of the modalities into one visit embedding."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from hamnet_jax.models.layers import BlockConfig, masked_softmax
from hamnet_jax.models.logical import dense, layer_norm, logical_init


class CrossModalFusion(nn.Module):
    """[N, M, E] modality tokens + [N, M] presence mask -> ([N, E] fused, [N, M] weights)."""

    num_layers: int
    blocks: BlockConfig

    @nn.compact
    def __call__(
        self, tokens: jax.Array, mask: jax.Array, deterministic: bool
    ) -> tuple[jax.Array, jax.Array]:
        type_embed = self.param("modality_embed", logical_init(nn.initializers.normal(0.02), (None, "embed")),
                                tokens.shape[1:])
        x = (tokens + type_embed) * mask[..., None]
        for i in range(self.num_layers):
            x = self.blocks.block(f"block_{i}")(x, mask, deterministic)
        x = layer_norm("norm")(x)
        weights = masked_softmax(dense(1, ("embed", None), jnp.float32, "modality_score")(x)[..., 0], mask)
        return (weights[..., None] * x).sum(axis=1), weights
