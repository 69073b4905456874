"""Logical axis names of HAMNet's parameters.

Layers name the role of every parameter dimension (`embed`, `mlp`, `heads`, ...); the
training side maps those names onto mesh axes with rules (`training/sharding.py`), so the
model code never mentions a mesh. Names used:

* `embed`    model width E (residual stream); `embed_out` the output side of an E x E map
             (a mesh axis may split only one dimension of a kernel)
* `mlp`      hidden width of feed-forward layers
* `heads`    attention heads; `kv` the per-head width
* `features` raw input features of a modality (or a token group's features)
* `groups`   token groups of the tokenized modalities
* `vocab`    levels of a categorical embedding
* `conv`     convolution taps; `None` for tiny axes that are never split
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax.numpy as jnp

from hamnet_jax.platform.matmul import dense_dot_general

LOGICAL_AXES: tuple[str, ...] = ("embed", "embed_out", "mlp", "heads", "kv", "features", "groups", "vocab", "conv")


def logical_init(init: Callable, axes: tuple[str | None, ...]) -> Callable:
    """`init` whose parameter carries logical axis names (unboxed by `init_params`)."""
    return nn.with_logical_partitioning(init, axes)


def dense(features: int, axes: tuple[str | None, str | None], dtype, name: str) -> nn.Dense:
    """nn.Dense whose kernel is named `axes` (in, out) and bias `axes[1]`; its weight
    gradient written as x^T dy (platform/matmul.py)."""
    return nn.Dense(
        features, dtype=dtype, name=name, dot_general=dense_dot_general,
        kernel_init=logical_init(nn.initializers.lecun_normal(), axes),
        bias_init=logical_init(nn.initializers.zeros_init(), (axes[1],)),
    )


def layer_norm(name: str) -> nn.LayerNorm:
    """LayerNorm computed in float32 whatever the compute dtype (DESIGN: norms in fp32)."""
    return nn.LayerNorm(
        dtype=jnp.float32, name=name,
        scale_init=logical_init(nn.initializers.ones_init(), ("embed",)),
        bias_init=logical_init(nn.initializers.zeros_init(), ("embed",)),
    )
