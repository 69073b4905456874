"""Uniform random bits for dropout masks: Threefry-2x32 with 20 rounds (Salmon et al. 2011,
"Parallel random numbers: as easy as 1, 2, 3"), the hash behind JAX's default keys,
written out round by round.

Why not `jax.random.bits`: on CPU JAX lowers the hash as a rolled loop (5 iterations of 4
rounds; each iteration is a separate XLA:CPU operation plus copies of the loop state), and
with `jax_threefry_partitionable` (the default) every 32-bit word costs a whole 64-bit
block (its two halves XORed). Unrolled, the 20 rounds are one elementwise kernel that XLA
fuses with the mask's threshold, and every block gives 64 bits. Same hash, same key ->
same bits (`threefry_2x32` equals JAX's hash; tested).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
KEY_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x: jax.Array, r: int) -> jax.Array:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry_2x32(key: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32-20 of the counters (x0, x1) (uint32, same shape) under `key` (uint32[2])."""
    ks = (key[0], key[1], key[0] ^ key[1] ^ KEY_PARITY)
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):  # 5 x 4 rounds, a key injection after each 4
        for r in ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = _rotate_left(x1, r) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def is_threefry_key(key: jax.Array) -> bool:
    """Whether `key` is a typed threefry key (the `training.dropout_rng` default)."""
    return jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and str(jax.random.key_impl(key)) == "threefry2x32"


def uniform_halfwords(key: jax.Array, n: int) -> jax.Array:
    """[n] uniform uint16 from a typed threefry key: four per Threefry block (64 bits), the
    block counter (0, i)."""
    blocks = -(-n // 4)
    with jax.named_scope("random_bits"):  # what experiments/profile_train_step.py counts as random bits
        y0, y1 = threefry_2x32(jax.random.key_data(key), jnp.zeros((blocks,), jnp.uint32),
                               jax.lax.iota(jnp.uint32, blocks))
        words = jnp.stack([y0, y1], axis=-1)  # [blocks, 2]
        return jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(-1)[:n]
