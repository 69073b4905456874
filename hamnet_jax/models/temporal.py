"""Temporal layer over visits: time embedding, masked temporal attention, a gated
depthwise causal convolution, and masked attention pooling."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hamnet_jax.models.layers import BlockConfig, masked_softmax
from hamnet_jax.models.logical import dense, layer_norm, logical_init


class CausalDepthwiseConv(nn.Module):
    """Per-channel causal convolution over visits: y[t] = sum_j w[j] * x[t - (K-1) + j] + b.

    Same parameters as `nn.Conv(E, (K,), feature_group_count=E, padding=((K-1, 0),))`,
    written as K shifted multiply-adds: exact, trivially exportable, and it sidesteps an
    XLA SPMD-partitioner bug that returned a wrong kernel gradient for grouped
    convolutions under a data x tensor mesh on CPU (found by tests/training/test_sharding.py).
    """

    kernel_size: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, width = self.kernel_size, x.shape[-1]
        kernel = self.param("kernel", logical_init(nn.initializers.lecun_normal(), ("conv", None, "embed")),
                            (k, 1, width))
        bias = self.param("bias", logical_init(nn.initializers.zeros_init(), ("embed",)), (width,))
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        t = x.shape[1]
        padded = jnp.pad(x, ((0, 0), (k - 1, 0), (0, 0)))
        return sum(padded[:, j:j + t] * kernel[j, 0] for j in range(k)) + bias


class TemporalEncoder(nn.Module):
    """[B, V, E] visit embeddings -> ([B, 2E] subject summary, [B, V] pooling weights).

    `visit_times` are years relative to the last visit, so the model sees the spacing of
    visits; `mask` [B, V] marks real visits. The summary concatenates the attention-pooled
    history with the last real visit's embedding (the visit the prediction is made at).
    """

    num_layers: int
    blocks: BlockConfig
    kernel_size: int = 3

    @nn.compact
    def __call__(
        self, x: jax.Array, visit_times: jax.Array, mask: jax.Array, deterministic: bool
    ) -> tuple[jax.Array, jax.Array]:
        width = x.shape[-1]
        t = visit_times[..., None] / 10.0
        x = x + dense(width, ("features", "embed"), jnp.float32, "time_embed")(jnp.concatenate([t, t * t], -1))
        x = x * mask[..., None]
        for i in range(self.num_layers):
            x = self.blocks.block(f"block_{i}")(x, mask, deterministic)
        dtype = self.blocks.dtype
        conv = CausalDepthwiseConv(self.kernel_size, dtype, name="depthwise_conv")(x)
        x = (x + jax.nn.sigmoid(dense(width, ("embed", "embed_out"), dtype, "conv_gate")(x)) * conv)
        x = layer_norm("norm")(x * mask[..., None])
        weights = masked_softmax(dense(1, ("embed", None), jnp.float32, "pool_score")(x)[..., 0], mask)
        pooled = (weights[..., None] * x).sum(axis=1)
        last = jnp.maximum(mask.sum(axis=1).astype(jnp.int32) - 1, 0)
        last_visit = jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]
        return jnp.concatenate([pooled, last_visit], axis=-1), weights
