"""Multi-head self-attention with three interchangeable kernels, all exact:

* `naive`       scores [N, H, T, T] materialized, masked softmax in float32; the only
                kernel with attention dropout.
* `dot_product` `jax.nn.dot_product_attention`: XLA's fused attention, cuDNN's flash
                attention on GPUs where the shapes and dtype allow it.
* `blockwise`   online-softmax attention over query and key chunks (Rabe & Staats 2021,
                "Self-attention does not need O(n^2) memory"; the running max/sum update of
                Milakov & Gimelshein 2018 as used by FlashAttention, Dao et al. 2022). Each
                chunk is rematerialized in the backward pass, so memory grows with T * chunk
                instead of T^2 — what long visit histories need.

Inputs are [N, T, H, D] query/key/value and a [N, T] key padding mask (1 = real token).
Parameter names and shapes follow `flax.linen.MultiHeadDotProductAttention`
(`query`/`key`/`value`/`out`), so checkpoints do not depend on the kernel chosen.

When the `intermediates` collection is mutable (`apply(..., mutable=["intermediates"])`),
every attention layer also sows its head-averaged weights [N, T, T] under `attention`:
what attention transfer in distillation reads. Otherwise nothing extra is computed.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hamnet_jax.models.logical import logical_init

NEG_INF = -1e9


def masked_softmax(scores: jax.Array, mask: jax.Array, axis: int = -1) -> jax.Array:
    """Softmax (float32) over `axis` that gives zero weight where `mask` is 0 (uniform if all are 0)."""
    scores = jnp.where(mask > 0, scores.astype(jnp.float32), NEG_INF)
    return jax.nn.softmax(scores, axis=axis)


def attention_weights(q: jax.Array, k: jax.Array, key_mask: jax.Array) -> jax.Array:
    """Softmax attention weights [N, H, T, T] (float32) of [N, T, H, D] queries and keys."""
    scores = jnp.einsum("nqhd,nkhd->nhqk", q, k).astype(jnp.float32) / math.sqrt(q.shape[-1])
    return masked_softmax(scores, key_mask[:, None, None, :])


def naive_attention(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array,
                    dropout: float = 0.0, dropout_rng: jax.Array | None = None) -> jax.Array:
    weights = attention_weights(q, k, key_mask)
    if dropout > 0.0 and dropout_rng is not None:
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout, weights.shape)
        weights = jnp.where(keep, weights / (1.0 - dropout), 0.0)
    return jnp.einsum("nhqk,nkhd->nqhd", weights.astype(v.dtype), v)


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array) -> jax.Array:
    """jax.nn.dot_product_attention; on GPU with half precision it picks cuDNN when it can."""
    mask = (key_mask > 0)[:, None, None, :]
    implementation = None
    if jax.default_backend() == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16):
        implementation = "cudnn"
    try:
        return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=implementation)
    except Exception:  # cuDNN refuses some shapes (e.g. head dim, tiny T): XLA's kernel is exact too
        if implementation is None:
            raise
        return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="xla")


def _pad_to(x: jax.Array, axis: int, multiple: int) -> jax.Array:
    pad = -x.shape[axis] % multiple
    if not pad:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, pad)
    return jnp.pad(x, widths)


def blockwise_attention(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array,
                        block_size: int = 64) -> jax.Array:
    """Exact attention computed chunk by chunk with a running (max, sum, output) per query."""
    n, t, h, d = q.shape
    block = min(block_size, t)
    q, k, v = (_pad_to(a, 1, block) for a in (q, k, v))
    key_mask = _pad_to(key_mask, 1, block)
    chunks = q.shape[1] // block
    scale = 1.0 / math.sqrt(d)
    # [chunks, N, block, H, D]: scan over the leading axis
    split = lambda a: a.reshape((n, chunks, block) + a.shape[2:]).swapaxes(0, 1)
    k_chunks, v_chunks, m_chunks = split(k), split(v), split(key_mask)

    def one_query_chunk(q_chunk: jax.Array) -> jax.Array:
        @jax.checkpoint
        def step(carry, kv):
            acc, running_max, denom = carry
            k_c, v_c, m_c = kv
            s = jnp.einsum("nqhd,nkhd->nhqk", q_chunk, k_c).astype(jnp.float32) * scale
            s = jnp.where(m_c[:, None, None, :] > 0, s, NEG_INF)
            new_max = jnp.maximum(running_max, s.max(-1))
            correction = jnp.exp(running_max - new_max)
            p = jnp.exp(s - new_max[..., None])
            denom = denom * correction + p.sum(-1)
            acc = acc * correction[..., None] + jnp.einsum("nhqk,nkhd->nhqd", p, v_c.astype(jnp.float32))
            return (acc, new_max, denom), None

        init = (jnp.zeros((n, h, block, d), jnp.float32), jnp.full((n, h, block), -jnp.inf, jnp.float32),
                jnp.zeros((n, h, block), jnp.float32))
        (acc, _, denom), _ = jax.lax.scan(step, init, (k_chunks, v_chunks, m_chunks))
        return (acc / denom[..., None]).transpose(0, 2, 1, 3).astype(q.dtype)  # [N, block, H, D]

    out = jax.lax.map(one_query_chunk, split(q))  # [chunks, N, block, H, D]
    return out.swapaxes(0, 1).reshape(n, chunks * block, h, d)[:, :t]


class MultiHeadAttention(nn.Module):
    """Self-attention over [N, T, E] tokens with a [N, T] key padding mask."""

    num_heads: int
    implementation: str = "naive"
    block_size: int = 64
    dropout: float = 0.0
    dtype: Any = jnp.float32
    head_dim: int = 0  # 0 = width // num_heads

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, deterministic: bool) -> jax.Array:
        width = x.shape[-1]
        head_dim = self.head_dim or width // self.num_heads

        def project(name: str) -> jax.Array:
            return nn.DenseGeneral(
                (self.num_heads, head_dim), dtype=self.dtype, name=name,
                kernel_init=logical_init(nn.initializers.lecun_normal(), ("embed", "heads", "kv")),
                bias_init=logical_init(nn.initializers.zeros_init(), ("heads", "kv")),
            )(x)

        q, k, v = project("query"), project("key"), project("value")
        if self.is_mutable_collection("intermediates"):
            self.sow("intermediates", "attention", attention_weights(q, k, mask).mean(axis=1))
        if self.implementation == "naive":
            rng = None if deterministic or self.dropout == 0.0 else self.make_rng("dropout")
            out = naive_attention(q, k, v, mask, self.dropout, rng)
        elif self.implementation == "dot_product":
            out = dot_product_attention(q, k, v, mask)
        elif self.implementation == "blockwise":
            out = blockwise_attention(q, k, v, mask, self.block_size)
        else:
            raise ValueError(f"unknown attention implementation {self.implementation!r}")
        return nn.DenseGeneral(
            width, axis=(-2, -1), dtype=self.dtype, name="out",
            kernel_init=logical_init(nn.initializers.lecun_normal(), ("heads", "kv", "embed")),
            bias_init=logical_init(nn.initializers.zeros_init(), ("embed",)),
        )(out)
