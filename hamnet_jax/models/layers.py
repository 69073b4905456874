"""Building blocks shared by the encoders, the fusion and the temporal layer."""

from __future__ import annotations

import dataclasses

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hamnet_jax.models.attention import MultiHeadAttention, masked_softmax
from hamnet_jax.platform.random_bits import is_threefry_key, uniform_halfwords
from hamnet_jax.models.logical import dense, layer_norm, logical_init
from hamnet_jax.platform.matmul import MATMUL_NAME, matmul

# jax.checkpoint policies by config name: what the backward pass may keep from the forward
__all__ = ["MLP", "Dropout", "GatedAttentionBlock", "GroupedDense", "attention_block", "masked_mean", "masked_softmax"]

REMAT_POLICY_FNS: dict[str, Any] = {
    "full": jax.checkpoint_policies.nothing_saveable,  # recompute the whole block
    # keep matmul outputs (platform/matmul.py's by their checkpoint name), recompute the rest
    "save_dots": jax.checkpoint_policies.save_from_both_policies(
        jax.checkpoint_policies.checkpoint_dots, jax.checkpoint_policies.save_only_these_names(MATMUL_NAME)),
}


def masked_mean(x: jax.Array, mask: jax.Array, axis: int) -> jax.Array:
    """Mean of `x` over `axis` counting only positions where `mask` ([..., T]) is 1."""
    weights = mask[..., None].astype(x.dtype)
    return (x * weights).sum(axis) / jnp.maximum(weights.sum(axis), 1.0)


KEEP_BITS = 16  # resolution of the keep probability: 2^-16


def keep_mask(key: jax.Array, keep_prob: float, shape: tuple[int, ...]) -> jax.Array:
    """Bernoulli(`keep_prob`) mask (True = keep) from 16-bit uniforms: `jax.random.bernoulli`
    spends a whole 32-bit word per element, and the threefry rounds were ~28% of the
    standard tier's CPU training step. Threefry keys (the default) draw four per Threefry
    block, unrolled (platform/random_bits.py); other key implementations (rbg, unsafe_rbg) two
    per `jax.random.bits` word. Measured on this CPU: experiments/bench_train.py's "Flax
    bernoulli dropout masks" and "jax.random.bits dropout masks" rows. The keep probability
    is exact to 2^-16 (0.9 -> 58982 / 65536 = 0.899994)."""
    n = math.prod(shape)
    if is_threefry_key(key):
        halves = uniform_halfwords(key, n)
    else:
        words = jax.random.bits(key, ((n + 1) // 2,), jnp.uint32)
        halves = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(-1)[:n]
    threshold = min(round(keep_prob * 2**KEEP_BITS), 2**KEEP_BITS - 1)
    return halves.reshape(shape) < jnp.uint16(threshold)


def opaque_scalar(value: float, dtype: Any) -> jax.Array:
    """`value` as a scalar XLA cannot see as a constant (an optimization barrier).

    Dropout divides by the keep probability through this (`drop`). XLA rewrites a division
    by a constant into a multiply, and its fusion pass then recomputes the cheap masked
    activation, and in the backward pass its cotangent, inside every consumer instead of
    storing it. One consumer is the transposed copy that XLA:CPU makes before each weight
    gradient. That copy reads the recomputation's inputs (the random bits and up to three
    activations) with strided loads; in the standard tier's step these copies were the
    largest operations. A division by a runtime scalar is an expensive operation to XLA
    (`InstructionFusion::IsExpensive`), and XLA fuses an expensive operation with several
    users into none of them. So each masked activation and cotangent is computed once, in
    order, and the copies read a stored array (tested on a block's compiled gradient). The
    values are x / p within a rounding (XLA may multiply by 1/p instead). Measured:
    experiments/bench_train.py's "fp32, dropout divides by a constant" row."""
    return jax.lax.optimization_barrier(jnp.asarray(value, dtype))


@jax.custom_vjp
def drop(x: jax.Array, keep: jax.Array, divisor: jax.Array) -> jax.Array:
    """x where `keep`, else 0, divided by `divisor` (inverted dropout). Forward and backward
    both end in the division, so XLA stores each result once (`opaque_scalar`); JAX's own
    transpose of a select then a division would end the backward pass in the select, which
    XLA recomputes in every consumer from the random bits."""
    return jax.lax.select(keep, x, jnp.zeros_like(x)) / divisor


def _drop_fwd(x: jax.Array, keep: jax.Array, divisor: jax.Array) -> tuple[jax.Array, tuple]:
    return drop(x, keep, divisor), (keep, divisor)


def _drop_bwd(residuals: tuple, dy: jax.Array) -> tuple[jax.Array, None, None]:
    keep, divisor = residuals
    return jax.lax.select(keep, dy, jnp.zeros_like(dy)) / divisor, None, None


drop.defvjp(_drop_fwd, _drop_bwd)


class Dropout(nn.Dropout):
    """`nn.Dropout` with its own `__call__` (the same auto-name and RNG stream; the mask from
    `keep_mask`, half the random bits of Flax's). Exporters patch `nn.Dropout.__call__` into
    an inference-mode ONNX Dropout, which would drop the fixed MC-dropout masks
    (models/mc_dropout.py) that an exported MC graph applies; this class keeps them in the
    traced function."""

    @nn.compact
    def __call__(self, inputs: jax.Array, deterministic: bool | None = None, rng: jax.Array | None = None) -> jax.Array:
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        if self.rate == 0.0 or deterministic:
            return inputs
        if self.rate == 1.0:
            return jnp.zeros_like(inputs)
        keep_prob = 1.0 - self.rate
        rng = self.make_rng(self.rng_collection) if rng is None else rng
        shape = [1 if d in self.broadcast_dims else n for d, n in enumerate(inputs.shape)]
        keep = jnp.broadcast_to(keep_mask(rng, keep_prob, tuple(shape)), inputs.shape)
        return drop(inputs, keep, opaque_scalar(keep_prob, inputs.dtype))


class MLP(nn.Module):
    """Two dense layers with GELU and dropout: the transformer feed-forward block."""

    hidden: int
    out: int
    dropout: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        x = nn.gelu(dense(self.hidden, ("embed", "mlp"), self.dtype, "fc1")(x))
        x = Dropout(self.dropout)(x, deterministic=deterministic)
        return dense(self.out, ("mlp", "embed"), self.dtype, "fc2")(x)


@dataclasses.dataclass(frozen=True)
class BlockConfig:
    """What every gated attention block of one part of the model shares (the fusion, the
    temporal layer, a token encoder): one value passed by keyword instead of ten fields
    repeated in each part."""

    num_heads: int
    mlp_ratio: int = 2
    dropout: float = 0.0
    attention_dropout: float = 0.0
    attention: str = "naive"
    attention_block_size: int = 64
    remat: str = "none"  # the blocks' rematerialization policy (`attention_block`)
    dtype: Any = jnp.float32
    head_dim: int = 0  # 0 = width // num_heads
    mlp_dim: int = 0  # 0 = width * mlp_ratio

    def block(self, name: str) -> GatedAttentionBlock:
        """A block with these settings, rematerialized under `remat`."""
        return attention_block(self.remat)(self, name=name)


class GatedAttentionBlock(nn.Module):
    """Pre-norm self-attention + MLP, each added through a learned sigmoid gate.

    `mask` [N, T] is a key padding mask: absent tokens (missing modalities, padded visits)
    are never attended to, and their outputs are zeroed so they cannot leak downstream.
    """

    config: BlockConfig

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, deterministic: bool) -> jax.Array:
        c, width = self.config, x.shape[-1]
        h = layer_norm("norm_attn")(x)
        h = MultiHeadAttention(c.num_heads, c.attention, c.attention_block_size,
                               c.attention_dropout, c.dtype, c.head_dim, name="attn")(h, mask, deterministic)
        h = Dropout(c.dropout)(h, deterministic=deterministic)
        x = x + jax.nn.sigmoid(dense(width, ("embed", "embed_out"), c.dtype, "gate_attn")(h)) * h
        h = layer_norm("norm_mlp")(x)
        h = MLP(c.mlp_dim or width * c.mlp_ratio, width, c.dropout, c.dtype, name="mlp")(h, deterministic)
        h = Dropout(c.dropout)(h, deterministic=deterministic)
        x = x + jax.nn.sigmoid(dense(width, ("embed", "embed_out"), c.dtype, "gate_mlp")(h)) * h
        return x * mask[..., None].astype(x.dtype)


def attention_block(policy: str) -> type[GatedAttentionBlock]:
    """GatedAttentionBlock, rematerialized in the backward pass under `policy` unless 'none'."""
    if policy == "none":
        return GatedAttentionBlock
    # argnums count `self` as 0: (x, mask, deterministic) are 1, 2, 3
    return nn.remat(GatedAttentionBlock, policy=REMAT_POLICY_FNS[policy], static_argnums=(3,))


class GroupedDense(nn.Module):
    """A separate dense map per token group: [N, G, F] -> [N, G, E].

    Equivalent to one block-diagonal dense layer, so every feature keeps its own weight
    (SNPs and imaging phenotypes are not exchangeable within a group).
    """

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        groups, width = x.shape[-2], x.shape[-1]
        kernel = self.param("kernel", logical_init(nn.initializers.lecun_normal(batch_axis=(0,)),
                                                   ("groups", "features", "embed")),
                            (groups, width, self.features))
        bias = self.param("bias", logical_init(nn.initializers.zeros_init(), ("groups", "embed")),
                          (groups, self.features))
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        # group-major: XLA:CPU runs a batched matmul whose batch axis leads 2.2x faster (forward)
        # and 1.75x (forward + backward) than 'ngf,gfe' with the batch axis in the middle, the
        # two transposes included (1,024 rows x 16 groups x 128 -> 64, measured on this CPU)
        lead = x.shape[:-2]
        x = jnp.moveaxis(x.reshape((-1, groups, width)), 1, 0)
        y = jnp.moveaxis(matmul(x, kernel, batch_dims=1), 0, 1)  # weight gradient x^T dy: platform/matmul.py
        return y.reshape(lead + (groups, self.features)) + bias
