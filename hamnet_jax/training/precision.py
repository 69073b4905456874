"""Precision policies and dynamic loss scaling.

A policy separates three roles (DESIGN: precision per role): the compute dtype of the
layers, the dtype parameters are stored in, and the dtype of Adam's first moment. Norms,
softmax, the output heads and the loss stay float32 whatever the policy (the model does
that). fp16 has too little exponent range for raw gradients, so it trains with dynamic
loss scaling (Micikevicius et al. 2018, "Mixed Precision Training"): the loss is
multiplied by `scale`, gradients divided by it; a step whose gradients are not finite is
skipped and halves the scale; `period` finite steps in a row double it.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

from hamnet_jax.config.strategies import PrecisionMode


@dataclasses.dataclass(frozen=True)
class PrecisionPolicy:
    compute_dtype: str = "float32"
    param_dtype: str = "float32"
    moment_dtype: str = "float32"
    loss_scaling: bool = False


FP32 = PrecisionPolicy()


def resolve_policy(mode: str | PrecisionMode, platform: str | None = None,
                   param_dtype: str = "float32") -> PrecisionPolicy:
    """The policy of `mode` on `platform` (default: JAX's backend).

    `mixed` picks bfloat16 on TPU and on GPUs with bf16 tensor cores (compute capability
    >= 8), float16 with loss scaling on older GPUs, and float32 on CPU, where half types
    are emulated and only cost time.
    """
    mode = PrecisionMode.parse(mode)
    platform = platform or jax.default_backend()
    if mode is PrecisionMode.MIXED:
        if platform == "tpu":
            mode = PrecisionMode.BF16
        elif platform == "gpu":
            capability = getattr(jax.devices()[0], "compute_capability", "8.0")
            mode = PrecisionMode.BF16 if float(capability) >= 8.0 else PrecisionMode.FP16
        else:
            mode = PrecisionMode.FP32
    compute = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[mode.value]
    return PrecisionPolicy(compute, param_dtype, "float32", loss_scaling=mode is PrecisionMode.FP16)


@flax.struct.dataclass
class DynamicLossScale:
    """Loss scale state (a pytree: it lives in the TrainState and in checkpoints)."""

    scale: jax.Array
    good_steps: jax.Array
    period: int = flax.struct.field(pytree_node=False, default=2000)
    factor: float = flax.struct.field(pytree_node=False, default=2.0)
    min_scale: float = flax.struct.field(pytree_node=False, default=1.0)

    @classmethod
    def create(cls, initial_scale: float = 2.0**15, period: int = 2000, factor: float = 2.0) -> DynamicLossScale:
        return cls(jnp.asarray(initial_scale, jnp.float32), jnp.zeros((), jnp.int32), period, factor)

    def scale_loss(self, loss: jax.Array) -> jax.Array:
        return loss * self.scale.astype(loss.dtype)

    def unscale(self, grads):
        return jax.tree_util.tree_map(lambda g: (g.astype(jnp.float32) / self.scale).astype(g.dtype), grads)

    def adjust(self, finite: jax.Array) -> DynamicLossScale:
        """Halve on overflow; double after `period` finite steps in a row."""
        grown = self.good_steps + 1 >= self.period
        scale = jnp.where(finite, jnp.where(grown, self.scale * self.factor, self.scale),
                          jnp.maximum(self.scale / self.factor, self.min_scale))
        good = jnp.where(finite & ~grown, self.good_steps + 1, 0)
        return self.replace(scale=scale, good_steps=good.astype(jnp.int32))


def all_finite(tree) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
