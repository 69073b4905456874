"""Temporal layer over visits: time embedding, masked temporal attention, a gated
depthwise causal convolution, and masked attention pooling."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hamnet_jax.models.layers import attention_block, masked_softmax
from hamnet_jax.models.logical import dense, layer_norm, logical_init


class TemporalEncoder(nn.Module):
    """[B, V, E] visit embeddings -> ([B, 2E] subject summary, [B, V] pooling weights).

    `visit_times` are years relative to the last visit, so the model sees the spacing of
    visits; `mask` [B, V] marks real visits. The summary concatenates the attention-pooled
    history with the last real visit's embedding (the visit the prediction is made at).
    """

    num_layers: int
    num_heads: int
    kernel_size: int = 3
    mlp_ratio: int = 2
    dropout: float = 0.0
    attention_dropout: float = 0.0
    attention: str = "naive"
    attention_block_size: int = 64
    remat: str = "none"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, visit_times: jax.Array, mask: jax.Array, deterministic: bool
    ) -> tuple[jax.Array, jax.Array]:
        width = x.shape[-1]
        t = visit_times[..., None] / 10.0
        x = x + dense(width, ("features", "embed"), jnp.float32, "time_embed")(jnp.concatenate([t, t * t], -1))
        x = x * mask[..., None]
        for i in range(self.num_layers):
            x = attention_block(self.remat)(
                self.num_heads, self.mlp_ratio, self.dropout, self.attention_dropout, self.attention,
                self.attention_block_size, self.dtype, name=f"block_{i}",
            )(x, mask, deterministic)
        conv = nn.Conv(
            width,
            kernel_size=(self.kernel_size,),
            feature_group_count=width,
            padding=((self.kernel_size - 1, 0),),
            dtype=self.dtype,
            kernel_init=logical_init(nn.initializers.lecun_normal(), ("conv", None, "embed")),
            bias_init=logical_init(nn.initializers.zeros_init(), ("embed",)),
            name="depthwise_conv",
        )(x)
        x = (x + jax.nn.sigmoid(dense(width, ("embed", "embed_out"), self.dtype, "conv_gate")(x)) * conv)
        x = layer_norm("norm")(x * mask[..., None])
        weights = masked_softmax(dense(1, ("embed", None), jnp.float32, "pool_score")(x)[..., 0], mask)
        pooled = (weights[..., None] * x).sum(axis=1)
        last = jnp.maximum(mask.sum(axis=1).astype(jnp.int32) - 1, 0)
        last_visit = jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]
        return jnp.concatenate([pooled, last_visit], axis=-1), weights
